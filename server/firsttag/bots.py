"""Known automated user agents: their sessions are flagged so counts can exclude them.

Flagged, not refused: a monitoring check or a crawler still gets a working page, and the
site owner decides what to count. The tag adds ``navigator.webdriver`` (set by automated
browsers) to what the server sees here.
"""

from __future__ import annotations

import re

_BOT_UA = re.compile(
    r"bot\b|crawl|spider|slurp|headless|phantomjs|lighthouse|pagespeed|pingdom|uptime|"
    r"facebookexternalhit|embedly|preview|python-requests|python-urllib|aiohttp|httpx|"
    r"curl/|wget/|go-http-client|java/|okhttp|axios/|node-fetch|libwww|scrapy",
    re.IGNORECASE,
)


def is_bot(user_agent: str | None, webdriver: bool | None) -> bool:
    """True for an automated browser (webdriver) or a known bot user agent (or none)."""
    return bool(webdriver) or not user_agent or bool(_BOT_UA.search(user_agent))
