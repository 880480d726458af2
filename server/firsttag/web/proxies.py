"""Which address a request comes from, when proxies stand in front of the web server.

By default the client is the TCP peer and ``X-Forwarded-For`` is ignored: anyone can send
that header, and trusting it would let one client pose as many (and dodge its rate limit).
``FIRSTTAG_TRUSTED_PROXIES`` says who may set it: a count of proxies in front (werkzeug's
``ProxyFix``), or the networks the proxies are in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.middleware.proxy_fix import ProxyFix

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def trust_proxies(app: WSGIApplication, setting: str | None) -> WSGIApplication:
    """Wrap ``app`` so ``REMOTE_ADDR`` is the client behind the proxies ``setting`` names.

    ``setting`` is None (trust no one), a count such as ``"1"``, or comma-separated CIDRs
    such as ``"10.0.0.0/8, 192.168.1.7"``; anything else raises ValueError.
    """
    if not setting or not setting.strip():
        return app
    if setting.strip().isdigit():
        count = int(setting)
        return ProxyFix(app, x_for=count, x_proto=0, x_host=0) if count else app
    try:
        networks = [ipaddress.ip_network(c.strip(), strict=False) for c in setting.split(",")]
    except ValueError:
        raise ValueError(
            f"FIRSTTAG_TRUSTED_PROXIES must be a count or CIDRs like 10.0.0.0/8, got {setting!r}"
        ) from None
    return _TrustedNetworks(app, networks)


def _trusted(address: str, networks: Iterable[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in networks)


class _TrustedNetworks:
    """The client is the last ``X-Forwarded-For`` hop not inside a trusted network.

    The header is read right to left, from the hop nearest us, and only while each hop
    is a trusted proxy; so addresses a client writes into the header itself are never
    believed.
    """

    def __init__(self, app: WSGIApplication, networks: list[Network]) -> None:
        self.app = app
        self.networks = networks

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        peer = environ.get("REMOTE_ADDR", "")
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded and _trusted(peer, self.networks):
            hops = [h.strip() for h in forwarded.split(",") if h.strip()]
            client = peer
            while hops:
                client = hops.pop()
                if not _trusted(client, self.networks):
                    break
            environ["REMOTE_ADDR"] = client
        return self.app(environ, start_response)
