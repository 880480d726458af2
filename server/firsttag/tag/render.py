"""The browser tag: ``tag_templates/tag.min.js`` with each site's values, and its cache.

Pure: no Flask. :mod:`firsttag.web.tags` serves these bytes; ``firsttag build`` writes them.

Every URL in a tag comes from the configured public URL (``FIRSTTAG_PUBLIC_URL``), never
from the request: a request with ``Host: evil.example`` gets the same bytes as any other,
and cannot make the server render anything new.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from jinja2.utils import htmlsafe_json_dumps

from firsttag.sites import Site

#: Rendered tags kept per process: one entry per site, least recently served dropped first.
TAG_CACHE_SITES = 4096


def templates_dir() -> Path:
    """Where the tag templates are: the source tree, or inside an installed wheel."""
    package = Path(__file__).resolve().parents[1]  # .../firsttag
    # Installed: firsttag/tag_templates; in the source tree: tag_templates/ at the top.
    for candidate in (package / "tag_templates", package.parents[1] / "tag_templates"):
        if candidate.is_dir():
            return candidate
    raise RuntimeError("tag_templates directory not found")


#: The tag as people read and edit it, and as browsers get it: minified at build time by
#: ``python -m firsttag_build.tagmin`` (terser, via Node) and committed, so serving it
#: needs no minifier. Its first line is a comment recording what it was built from.
SOURCE_NAME = "tag.js"
MINIFIED_NAME = "tag.min.js"

#: The string literals in tag.js that each site's values replace, after minifying.
_PLACEHOLDERS = ("API_URL", "SITE_KEY", "HISTORY", "GLOBAL_NAME", "CONSENT")
_PLACEHOLDER = re.compile(r'"__FIRSTTAG_([A-Z_]+)__"')


def read_minified() -> tuple[str, str]:
    """The committed ``tag.min.js`` as its header comment line and its minified body."""
    header, _, body = (templates_dir() / MINIFIED_NAME).read_text().partition("\n")
    return header, body.strip()


@cache
def _minified_tag() -> str:
    """The minified tag with its placeholders in place: read once per process.

    Substituting a site's values into it takes microseconds, so no site, host or settings
    change costs more than that.
    """
    minified = read_minified()[1]
    if sorted(_PLACEHOLDER.findall(minified)) != sorted(_PLACEHOLDERS):
        raise RuntimeError(f"tag.min.js must contain each of {_PLACEHOLDERS} once, as a string")
    return minified


#: gzip -9 size the tag must stay within; enforced by a test and by ``firsttag build``.
TAG_BUDGET_GZIP = 1500


_TagInputs = tuple[str, str, bool, str | None, bool]


def _tag_inputs(site: Site) -> _TagInputs:
    # Everything of a site that reaches its tag; the render cache compares exactly these,
    # so a settings change that alters the tag is a miss and any other change is not.
    s = site.settings
    return site.site_key, s.global_name, s.consent_required, s.first_party_path, s.track_history


def site_base(site: Site, base_url: str) -> str:
    """Where the pages of ``site`` reach this server: ``base_url``, or in first-party mode
    the site's own path (``/ft``), which the browser resolves against each page's origin."""
    return site.settings.first_party_path or base_url.rstrip("/")


def render_tag(site: Site, base_url: str) -> bytes:
    """The minified tag of ``site`` talking to the server at ``base_url``.

    In first-party mode the tag talks to the site's own path instead (:func:`site_base`).
    The same bytes are served at /t/<id>.js and written by ``firsttag build``.
    """
    site_key, global_name, consent, _, track_history = _tag_inputs(site)
    # Jinja's |tojson escaping: JSON with < > & ' as \u escapes, so a value can close
    # neither its string nor a surrounding <script>. One pass: no value is read again.
    literals = {
        "API_URL": htmlsafe_json_dumps(site_base(site, base_url) + "/api/v1"),
        "SITE_KEY": htmlsafe_json_dumps(site_key),
        "HISTORY": "true" if track_history else "false",
        "GLOBAL_NAME": htmlsafe_json_dumps(global_name),
        "CONSENT": "true" if consent else "false",
    }
    return _PLACEHOLDER.sub(lambda m: literals[m[1]], _minified_tag()).encode()


@dataclass(frozen=True)
class RenderedTag:
    """One site's tag as served: the bytes, their ETag and their SRI integrity value."""

    body: bytes
    etag: str
    integrity: str

    @classmethod
    def of(cls, body: bytes) -> RenderedTag:
        """Describe ``body``."""
        sri = base64.b64encode(hashlib.sha384(body).digest()).decode()
        return cls(body, hashlib.sha256(body).hexdigest()[:32], f"sha384-{sri}")


class TagCache:
    """Each site's rendered tag for one public URL, bounded and thread-safe.

    Keyed by site id and checked against what the site owner configured (site key, global
    name, consent mode): a settings change replaces the entry on the next request, and
    nothing from the request takes part, so random Host headers are all hits. At most
    ``max_sites`` entries; the least recently served site is dropped first.
    """

    def __init__(self, public_url: str, max_sites: int = TAG_CACHE_SITES) -> None:
        self.public_url = public_url
        self.max_sites = max_sites
        #: Tags rendered so far (misses); tests and benchmarks read it.
        self.renders = 0
        self._entries: OrderedDict[str, tuple[_TagInputs, RenderedTag]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, site: Site) -> RenderedTag:
        """The tag of ``site``, rendered on the first request or after its settings changed."""
        inputs = _tag_inputs(site)
        with self._lock:
            hit = self._entries.get(site.id)
            if hit is not None and hit[0] == inputs:
                self._entries.move_to_end(site.id)
                return hit[1]
        # Rendered outside the lock: two threads may both render a new site once, which
        # costs less than making every other site's request wait behind the render.
        tag = RenderedTag.of(render_tag(site, self.public_url))
        with self._lock:
            self.renders += 1
            self._entries[site.id] = (inputs, tag)
            self._entries.move_to_end(site.id)
            while len(self._entries) > self.max_sites:
                self._entries.popitem(last=False)
        return tag


def tag_url(site: Site, base_url: str) -> str:
    """Where the tag of ``site`` is served."""
    return f"{base_url.rstrip('/')}/t/{site.id}.js"


#: The methods the snippet's stub queues until the tag has loaded. ``getIdentity`` is not
#: among them: it answers at once, so it exists only on the loaded tag.
STUB_METHODS = ("convert", "consent", "page")


def stub(global_name: str) -> str:
    """The inline ``<script>`` that queues calls made before the (async) tag has loaded.

    ``firsttag.convert(…)`` on a thank-you page then works whenever the tag arrives: the
    call is kept as ``[method, arguments]`` in ``firsttag.q`` (it returns undefined), and
    the tag replays the queue in order when it loads. ``global_name`` is a validated
    JavaScript identifier (:class:`~firsttag.sites.Settings`), so it is safe here as is.
    """
    g = global_name
    methods = ",".join(f'"{m}"' for m in STUB_METHODS)
    # Kept only if it is a loaded tag or an earlier stub: markup such as <a id="firsttag">
    # (allowed in many comment fields) makes window.firsttag an element or a collection,
    # and queueing onto that threw into the page and stopped the tag.
    return (
        f"<script>window.{g}=function(f){{return f&&(f.q instanceof Array||"
        f'typeof f.getIdentity=="function")?f:{{q:[]}}}}(window.{g});[{methods}].forEach('
        f"function(m){{var f={g};f[m]=f[m]||function(){{f.q.push([m,arguments])}}}})</script>"
    )


def snippet(site: Site, base_url: str, integrity: str | None = None) -> str:
    """What a site owner pastes into every page: the stub and the async ``<script>``.

    In first-party mode the tag is loaded from the site's own path (``/ft/t/<id>.js``).
    With ``integrity`` (an SRI value) the script line pins those exact bytes.
    """
    src = tag_url(site, site_base(site, base_url))
    pinned = f' integrity="{integrity}" crossorigin="anonymous"' if integrity else ""
    return f'{stub(site.settings.global_name)}\n<script src="{src}"{pinned} async></script>'
