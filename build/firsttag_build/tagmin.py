"""Minify the browser tag at build time: ``tag_templates/tag.js`` → ``tag.min.js``, by terser.

Run ``python -m firsttag_build.tagmin`` after editing ``tag.js`` and commit both files. It
needs Node.js (``npx`` fetches the pinned terser); the server, CI and a fresh install do
not: they read the committed ``tag.min.js``. Its first line records the SHA-256 of the
source and of the minified body, so a test fails when either file changed without the other.

terser won over calmjs.parse and esbuild by about 40 bytes gzip on the long-host budget
test (docs/benchmarks.md has the figures); the tag's budget is 1,500.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

from firsttag.tag.render import MINIFIED_NAME, SOURCE_NAME, templates_dir

#: Pinned: another terser version may print other bytes, which the freshness test would
#: then report as stale until they are committed.
TERSER = "terser@5.51.2"
#: ES5 output for old browsers and GTM. reduce_vars=false: otherwise terser inlines the
#: constant arguments of the outer function, folding ``!"__FIRSTTAG_CONSENT__"`` to
#: ``false`` and losing the placeholder that each site's consent mode replaces.
OPTIONS = ("--ecma", "5", "--compress", "passes=2,reduce_vars=false", "--mangle")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def provenance(source: str, body: str) -> str:
    """The header line of ``tag.min.js``: what made ``body``, from which ``source``."""
    return (
        f"/* {SOURCE_NAME} sha256:{_sha256(source)} minified by {TERSER} {' '.join(OPTIONS)}"
        f" into body sha256:{_sha256(body)}; regenerate: python -m firsttag_build.tagmin */"
    )


def minify(source: str) -> str:
    """``source`` minified by the pinned terser (runs ``npx``; raises if it fails)."""
    done = subprocess.run(
        ["npx", "--yes", TERSER, *OPTIONS],
        input=source,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return done.stdout.strip()


def main() -> None:
    """Write ``tag.min.js`` from ``tag.js`` and print its size."""
    folder = templates_dir()
    source = (folder / SOURCE_NAME).read_text()
    body = minify(source)
    (folder / MINIFIED_NAME).write_text(f"{provenance(source, body)}\n{body}\n")
    print(f"wrote {folder / MINIFIED_NAME}: {len(body.encode())} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
