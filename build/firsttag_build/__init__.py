"""The static asset builder: every site's tag and GTM files as files for a CDN.

``firsttag build --out DIR`` writes, per site, ``DIR/<id>/tag.js`` (byte-identical to what
``GET /t/<id>.js`` serves for the same base URL), a content-hashed ``tag.<hash>.js`` for
long-lived caching, ``.gz`` and ``.br`` copies beside each, and the three GTM files; and
``DIR/manifest.json`` with each file's size, SHA-256 and SRI ``sha384-…`` integrity.
Nothing depends on the clock or on directory order: the same inputs give the same bytes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import brotli
from firsttag.sites import Site
from firsttag.tag import gtm
from firsttag.tag.render import TAG_BUDGET_GZIP, render_tag


@dataclass(frozen=True)
class SiteBuild:
    """What was built for one site."""

    site_id: str
    raw: int
    gzip: int
    brotli: int
    files: dict[str, dict[str, Any]]


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=9, mtime=0)  # mtime=0: reproducible


def _brotli(data: bytes) -> bytes:
    return brotli.compress(data, quality=11)


def _describe(data: bytes) -> dict[str, Any]:
    sri = base64.b64encode(hashlib.sha384(data).digest()).decode()
    return {
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "integrity": f"sha384-{sri}",
    }


def build_site(site: Site, out: Path, base_url: str) -> SiteBuild:
    """Write one site's files under ``out/<id>/`` and describe them."""
    folder = out / site.id
    (folder / "gtm").mkdir(parents=True, exist_ok=True)
    tag = render_tag(site, base_url)
    packed = _gzip(tag)
    files: dict[str, bytes] = {
        "tag.js": tag,
        f"tag.{hashlib.sha256(tag).hexdigest()[:16]}.js": tag,
    }
    for name in list(files):
        files[name + ".gz"] = packed
        files[name + ".br"] = _brotli(tag)
    for name, (_, render) in gtm.FILES.items():
        files[f"gtm/{name}"] = render(site, base_url).encode()
    described = {}
    for name, data in sorted(files.items()):
        (folder / name).write_bytes(data)
        described[name] = _describe(data)
    return SiteBuild(site.id, len(tag), len(packed), len(_brotli(tag)), described)


def build(
    sites: Iterable[Site],
    out: Path,
    base_url: str,
    on_built: Callable[[SiteBuild], None] | None = None,
) -> list[SiteBuild]:
    """Build every site and write ``out/manifest.json``; returns what was built."""
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for site in sorted(sites, key=lambda s: s.id):
        results.append(build_site(site, out, base_url))
        if on_built:
            on_built(results[-1])
    manifest = {
        "baseUrl": base_url.rstrip("/"),
        "budgetGzip": TAG_BUDGET_GZIP,
        "sites": {
            r.site_id: {"raw": r.raw, "gzip": r.gzip, "brotli": r.brotli, "files": r.files}
            for r in results
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return results
