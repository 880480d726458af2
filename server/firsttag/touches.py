"""Touches: where a visit came from, read from its landing URL, referrer and user agent.

Pure (no I/O, no Flask): the worker calls :func:`parse` once per registered session, so the
web tier stays as fast as before and the tag stays small. The rules are documented, with
examples, in ``docs/attribution.md``; in short, the first rule that applies wins:

1. ``utm_medium`` (or, without one, a recognised ``utm_source``) says the channel: explicit
   tagging is the site owner's word and beats any guess.
2. An ad click ID (``gclid``, ``fbclid``, …) says the platform and that it was paid.
3. A ``dub_id`` (a Dub short link) is an affiliate/referral-link touch.
4. The referrer: a search engine, social network or webmail (Snowplow's referer-parser list,
   plus :data:`EXTRA_REFERRERS`) gives organic search, organic social or email; any other
   outside host is a referral.
5. Nothing (no referrer, the site's own origins, or a payment provider's return): direct.
   A visit that carries a Dub click remembered in the visitor's cookie is that link's touch,
   as attribution has always counted it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from urllib.parse import parse_qsl, urlsplit

# Snowplow's referer-parser list: ~300 search engines, social networks and webmail hosts
# with their names. The only such list on PyPI; its data dates from 2016, so the hosts
# that appeared since are added in EXTRA_REFERRERS below.
from referer_parser import REFERERS, Referer

# ua-parser's maintained regexes (ua-parser-builtins, monthly) behind user-agents-ng's
# is_mobile/is_tablet/is_pc/is_bot: ~1 ms for a new user agent in pure Python, under
# 1.5 MB installed, where Matomo's device-detector port is 20 MB of YAML to load.
from user_agents import parse as parse_user_agent

#: The channels a touch is classified into.
CHANNELS = (
    "paid search",
    "organic search",
    "paid social",
    "organic social",
    "email",
    "affiliate",
    "referral",
    "other",
    "direct",
)

#: Ad click IDs, in the order they are looked for, with the platform and channel each means.
#: Meta adds ``fbclid`` to organic links too; tag those with utm_medium=social to tell them apart.
CLICK_IDS: dict[str, tuple[str, str]] = {
    "gclid": ("google", "paid search"),
    "gbraid": ("google", "paid search"),
    "wbraid": ("google", "paid search"),
    "msclkid": ("bing", "paid search"),
    "fbclid": ("facebook", "paid social"),
    "ttclid": ("tiktok", "paid social"),
    "li_fat_id": ("linkedin", "paid social"),
    "twclid": ("twitter", "paid social"),
    "dub_id": ("dub", "affiliate"),
}

#: Hosts missing from referer-parser's 2016 data: (medium, name).
EXTRA_REFERRERS: dict[str, tuple[str, str]] = {
    "x.com": ("social", "Twitter"),
    "tiktok.com": ("social", "TikTok"),
    "threads.net": ("social", "Threads"),
    "bsky.app": ("social", "Bluesky"),
    "mastodon.social": ("social", "Mastodon"),
    "search.brave.com": ("search", "Brave"),
    "outlook.live.com": ("email", "Outlook.com"),
    "outlook.office.com": ("email", "Outlook.com"),
    "mail.proton.me": ("email", "Proton Mail"),
    "com.google.android.gm": ("email", "Gmail"),  # the Gmail app's android-app:// referrer
}

#: Payment providers whose checkout returns the buyer to the site: not a new touch.
PAYMENT_HOSTS = (
    "stripe.com",
    "paypal.com",
    "klarna.com",
    "adyen.com",
    "mollie.com",
    "pay.google.com",
    "checkout.shopify.com",
    "squareup.com",
    "paddle.com",
    "lemonsqueezy.com",
)

_PAID = re.compile(r"^(.*cp.*|ppc|retargeting|paid.*|display|banner|ads?)$")
_SOCIAL = re.compile(r"^(social|social[-_ ]?(network|media)|sm|organic[-_ ]?social)$")
_EMAIL = re.compile(r"^(e[-_ ]?mail|newsletter)$")
_AFFILIATE = re.compile(r"^(affiliates?|partners?|referral[-_ ]?link)$")
_SEARCH_SOURCES = {"google", "bing", "yahoo", "duckduckgo", "baidu", "yandex", "ecosia", "brave"}
_SOCIAL_SOURCES = {
    "facebook", "fb", "instagram", "ig", "twitter", "x", "linkedin", "tiktok", "pinterest",
    "reddit", "youtube", "snapchat", "threads", "bluesky", "meta",
}  # fmt: skip

#: The longest value kept for a source, medium, campaign, term, content or click ID, in
#: UTF-8 bytes. In bytes, not characters: the dashboard's rollups key a row by two touch
#: values and a conversion name, and PostgreSQL refuses an index entry over 2,704 bytes
#: (1,000 + 255 + a 255-character name of 1,020 bytes + the rest stays under it).
MAX_VALUE = 255
#: The longest landing page path kept, in UTF-8 bytes.
MAX_PATH = 1000
#: A DNS name is at most 253 characters in at most 127 labels; longer "hosts" are unknown.
MAX_HOST = 253
MAX_LABELS = 127
#: C0 controls and DEL, which percent-decoding can produce from a URL the door accepted.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_REFERRERS = dict(REFERERS)
_REFERRERS.update({host: {"name": n, "medium": m} for host, (m, n) in EXTRA_REFERRERS.items()})


@dataclass(frozen=True)
class Touch:
    """Where one visit came from. ``None`` fields were not known."""

    channel: str
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    term: str | None = None
    content: str | None = None
    click_id_type: str | None = None
    click_id_value: str | None = None
    landing_page: str | None = None

    def columns(self) -> dict[str, str | None]:
        """The ``sessions`` columns of this touch."""
        return asdict(self)


def parse(
    url: str | None,
    referrer: str | None,
    origins: tuple[str, ...] | list[str] = (),
    session_click_id: str | None = None,
) -> Touch:
    """Classify a visit landing on ``url`` from ``referrer`` (see the module docstring).

    ``origins`` are the site's own ``scheme://host[:port]`` origins (self-referrals are not
    touches); ``session_click_id`` is the Dub click the tag sent with the session, from the
    URL or from its cookie.
    """
    params = _params(url)
    landing = _path(url)
    utm = {k: params.get(f"utm_{k}") for k in ("source", "medium", "campaign", "term", "content")}
    click_type = next((k for k in CLICK_IDS if params.get(k)), None)
    click_value = params.get(click_type) if click_type else None
    if not click_type and session_click_id:
        click_type, click_value = "dub_id", _clip(_CONTROL.sub("", session_click_id))
    ref = _referrer(referrer, origins)

    source = _lower(utm["source"])
    medium = _lower(utm["medium"])
    channel = _tagged_channel(source, medium, ref)
    if channel is None and click_type:
        platform, channel = CLICK_IDS[click_type]
        if click_type == "dub_id":
            source = source or (ref[1] if ref else None) or platform
            medium = medium or "affiliate"
        else:
            source = source or platform
            medium = medium or "cpc"
    if channel is None and ref:
        kind, name = ref
        channel = {"search": "organic search", "social": "organic social", "email": "email"}.get(
            kind, "referral"
        )
        source = source or name
        medium = medium or {"search": "organic", "social": "social", "email": "email"}.get(
            kind, "referral"
        )
    if channel is None:
        channel = "other" if source else "direct"
    return Touch(
        channel=channel,
        source=_clip(source) if source else None,
        # Cut again: lower-casing can lengthen a value ("İ", 2 bytes, becomes 3).
        medium=_clip(medium) if medium else None,
        campaign=utm["campaign"],
        term=utm["term"],
        content=utm["content"],
        click_id_type=click_type,
        click_id_value=click_value,
        landing_page=landing,
    )


def _tagged_channel(
    source: str | None, medium: str | None, ref: tuple[str, str] | None
) -> str | None:
    # GA4's default channel rules, reduced to firsttag's channels.
    if medium is None:
        if source and _EMAIL.match(source):
            return "email"
        return None
    social = (source in _SOCIAL_SOURCES) or bool(ref and ref[0] == "social")
    search = (source in _SEARCH_SOURCES) or bool(ref and ref[0] == "search")
    if _EMAIL.match(medium) or (source and _EMAIL.match(source)):
        return "email"
    if _AFFILIATE.match(medium):
        return "affiliate"
    if _SOCIAL.match(medium):
        return "organic social"
    if medium == "organic":
        return "organic search" if search or not social else "organic social"
    if medium == "referral":
        return "referral"
    if _PAID.match(medium):
        if social or "social" in medium:
            return "paid social"
        if search or "search" in medium or medium in ("cpc", "ppc"):
            return "paid search"
    return "other"


def _referrer(referrer: str | None, origins: tuple[str, ...] | list[str]) -> tuple[str, str] | None:
    """(medium, source) of an outside referrer; None for none, self or a payment provider."""
    if not referrer:
        return None
    try:
        parts = urlsplit(referrer)
        host = _CONTROL.sub("", parts.hostname or "").lower()
    except ValueError:
        return None
    if not host:
        return None
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    own_hosts = {urlsplit(o).hostname for o in origins}
    if origin in origins or host in own_hosts:
        return None
    if any(host == p or host.endswith("." + p) for p in PAYMENT_HOSTS):
        return None
    if parts.scheme == "android-app":
        known = _REFERRERS.get(host)
        return (known["medium"], _name(known["name"])) if known else ("unknown", host)
    if len(host) > MAX_HOST or host.count(".") >= MAX_LABELS:
        # No real host is this long; referer-parser's lookup recurses once per label and
        # would exceed Python's recursion limit (a 2xx event the worker could not store).
        return "unknown", _clip(host)
    found = Referer(referrer, referers=_REFERRERS)
    if found.known and found.referer:
        return found.medium, _name(found.referer)
    return "unknown", host.removeprefix("www.")


def device(user_agent: str | None, bot: bool = False) -> str | None:
    """``desktop``, ``mobile``, ``tablet``, ``bot`` or ``other`` (None without a user agent)."""
    if bot:
        return "bot"
    if not user_agent:
        return None
    return _device_type(user_agent[:1000])


# A new user agent costs ~1 ms of regexes; traffic repeats the same few hundred strings, so
# a bounded memo (a pure function of its argument, ~1 MB at most) makes the rest ~µs.
@lru_cache(maxsize=4096)
def _device_type(user_agent: str) -> str:
    ua = parse_user_agent(user_agent)
    if ua.is_bot:
        return "bot"
    if ua.is_tablet:
        return "tablet"
    if ua.is_mobile:
        return "mobile"
    if ua.is_pc:
        return "desktop"
    return "other"


def _params(url: str | None) -> dict[str, str]:
    if not url:
        return {}
    try:
        query = urlsplit(url).query
    except ValueError:
        return {}
    out: dict[str, str] = {}
    for key, value in parse_qsl(query):
        # Decoding may produce what the door refused in the raw URL (%00, control
        # characters): PostgreSQL refuses NUL in text, and none of it means anything here.
        key = _CONTROL.sub("", key).lower()
        value = _CONTROL.sub("", value).strip()
        if value and key not in out:  # the first occurrence wins, as in GA
            out[key] = _clip(value)
    return out


def _path(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return clip(urlsplit(url).path or "/", MAX_PATH)
    except ValueError:
        return None


def _clip(value: str) -> str:
    return clip(value, MAX_VALUE)


def clip(value: str, limit: int) -> str:
    """The longest start of ``value`` of at most ``limit`` UTF-8 bytes (whole characters)."""
    if len(value) * 4 <= limit:  # short enough whatever its script: the common case
        return value
    return value.encode("utf-8", "replace")[:limit].decode("utf-8", "ignore")


def _lower(value: str | None) -> str | None:
    return value.lower() if value else None


def _name(referrer_name: str) -> str:
    # "Google" → "google", "Yahoo!" → "yahoo", "Hacker News" → "hacker news".
    return re.sub(r"[^a-z0-9.+ -]", "", referrer_name.lower()).strip() or referrer_name.lower()
