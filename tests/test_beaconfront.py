"""The ingest fast path (web/beaconfront.py) answers and queues exactly as Flask's routes do.

The differential test sends the same request (valid bodies, and hostile ones from
test_storable's strategies, with and without an allowed or foreign ``Origin``) once to
the front and once to the Flask app behind it, each from a fresh client address, and
compares status, headers, body, the events queued in Redis and the counters moved.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import secrets
from typing import Any

import pytest
from firsttag import metrics
from firsttag.events.buffer import BUFFER_KEY
from firsttag.sites import Settings, create_site
from firsttag.web.app import create_app
from firsttag.web.beaconfront import BeaconFront
from firsttag.web.tagfront import TagFront
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from redis import Redis

from tests.test_storable import _HOSTILE, _dumps
from tests.test_validation import BODIES

_PATHS = ("/api/v1/beacon", "/api/v1/sessions")
_ADDRESSES = itertools.count(1)
_CHROME = "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0"


def _post(
    wsgi: Any, path: str, body: bytes, address: str, query: str = "", **headers: str
) -> tuple[str, list[tuple[str, str]], bytes]:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": address,
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_LENGTH":
            if value == "absent":
                del environ[key]
            else:
                environ[key] = value
        else:
            environ["HTTP_" + key] = value
    answered: list = []
    out = wsgi(environ, lambda status, hs, exc=None: answered.append((status, hs)))
    content = b"".join(out)
    if hasattr(out, "close"):
        out.close()
    status, header_list = answered[0]
    return status, [(k, v) for k, v in header_list if k != "Date"], content


def _counts() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in (metrics.REQUESTS, metrics.EVENTS, metrics.RATE_LIMITED):
        for metric in family.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _moved(before: dict, after: dict) -> dict:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def _queued(redis: Redis, start: int) -> list[dict[str, Any]]:
    events = [json.loads(raw) for raw in redis.lrange(BUFFER_KEY, start, -1)]
    for queued in events:
        queued.pop("receivedAt")
        queued["data"].pop("occurredAt", None)  # the time of receipt, for a beacon
    return events


@pytest.fixture
def front(app) -> BeaconFront:
    assert isinstance(app.wsgi_app, TagFront) and isinstance(app.wsgi_app.app, BeaconFront)
    return app.wsgi_app.app


@st.composite
def _request(draw: Any, keys: dict[str, str]) -> tuple[str, bytes, str, dict[str, str]]:
    path = draw(st.sampled_from(_PATHS))
    body: dict[str, Any] = dict(BODIES[path][1])
    body["siteKey"] = draw(st.sampled_from([keys["site"], keys["site"], keys["first_party"]]))
    if "id" in body:
        body["id"] = secrets.token_hex(8)
    body["sessionId"] = secrets.token_hex(8)
    # Fields a page may send, mostly well: these reach the accepted path.
    extras: dict[str, Any] = {
        "sessionKey": st.sampled_from([keys["session_key"], keys["other_session_key"], "x"]),
        "value": st.sampled_from([0, 999, 100_000_000, 10**15]),
        "clickId": st.sampled_from(["dub_1", None, ""]),
        "url": st.sampled_from(["https://shop.example/a?gclid=x", None, "javascript:1"]),
        "referrer": st.sampled_from(["https://www.google.com/", None]),
        "webdriver": st.sampled_from([True, False, None]),
        "orderId": st.sampled_from(["o_1", None]),
        "siteKey": st.sampled_from([keys["site"], "pk_unknown", "", 5]),
    }
    for where in draw(st.lists(st.sampled_from(sorted(extras)), max_size=3, unique=True)):
        body[where] = draw(extras[where])
    # Then, a third of the time, hostile values anywhere.
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 2]))):
        where = draw(st.sampled_from([*body, "metadata.k", "extra"]))
        value = draw(_HOSTILE)
        if where == "metadata.k":
            body["metadata"] = {"k": value}
        else:
            body[where] = value
    raw = draw(
        st.sampled_from([_dumps(body)] * 12 + [b"", b"{", b"[]", b"null", b'{"a":1}', b"\xff"])
    )
    headers: dict[str, str] = {}
    origin = draw(
        st.sampled_from(
            [
                None,
                None,
                *["https://shop.example"] * 3,
                "https://evil.example",
                "http://localhost",
                "",
                "HTTPS://SHOP.EXAMPLE",
            ]
        )
    )
    if origin is not None:
        headers["Origin"] = origin
    agent = draw(st.sampled_from([None, _CHROME, "Googlebot/2.1", "x" * 600]))
    if agent is not None:
        headers["User-Agent"] = agent
    length = draw(st.sampled_from([None] * 16 + ["absent", "7", "99999999", "-1", "1e3"]))
    if length is not None:
        headers["Content-Length"] = length
    return path, raw, draw(st.sampled_from([""] * 12 + ["validate=1"])), headers


@pytest.fixture
def keys(app, engine, site) -> dict[str, str]:
    """Site keys and session keys the requests draw from."""
    first_party, _ = create_site(
        engine, "FP", ["http://localhost"], Settings(first_party_path="/ft")
    )
    other, _ = create_site(engine, "Other", ["https://other.example"])
    session_keys = app.extensions["firsttag"].session_keys
    return {
        "site": site.site_key,
        "first_party": first_party.site_key,
        "session_key": session_keys.issue(site.id, "s" * 20),
        "other_session_key": session_keys.issue(other.id, "s" * 20),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_front_answers_and_queues_like_flask(front, config, keys, data):
    path, raw, query, headers = data.draw(_request(keys))
    redis = Redis.from_url(config.redis_url)
    answers, queued, moved = [], [], []
    for wsgi in (front, front.app):  # the fast path, then Flask's own
        n = next(_ADDRESSES)  # a fresh client each time: the same rate-limit headers
        address = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        start, before = redis.llen(BUFFER_KEY), _counts()
        answers.append(_post(wsgi, path, raw, address, query, **headers))
        queued.append(_queued(redis, start))
        moved.append(_moved(before, _counts()))
    assert answers[0] == answers[1], (path, raw, headers)
    assert queued[0] == queued[1]
    assert moved[0] == moved[1]
    status = int(answers[0][0][:3])
    event(f"{path} {status}")
    assert status < 500, answers[0]
    assert len(queued[0]) == (1 if status < 300 else 0)  # browser endpoints ignore ?validate


def test_an_accepted_beacon_skips_flask_but_is_counted_logged_and_queued(app, config, site, caplog):
    dispatched: list[str] = []
    app.before_request(lambda: dispatched.append("flask"))
    redis = Redis.from_url(config.redis_url)
    before = _counts()
    body = json.dumps({**BODIES["/api/v1/beacon"][1], "siteKey": site.site_key}).encode()
    with caplog.at_level("INFO", logger="firsttag.access"):
        status, headers, answer = _post(
            app.wsgi_app, "/api/v1/beacon", body, "10.9.9.9", Origin="https://shop.example"
        )
    assert status == "202 ACCEPTED" and json.loads(answer) == {"accepted": True, "id": "b" * 32}
    assert dispatched == []  # answered by the fast path
    assert ("Access-Control-Allow-Origin", "https://shop.example") in headers
    assert dict(headers)["RateLimit-Remaining"] == str(config.rate_per_ip - 1)
    assert redis.llen(BUFFER_KEY) == 1
    moved = _moved(before, _counts())
    assert moved[("firsttag_events_total", (("outcome", "accepted"),))] == 1
    requests_key = (
        "firsttag_http_requests_total",
        (("endpoint", "/api/v1/beacon"), ("method", "POST"), ("status", "202")),
    )
    assert moved[requests_key] == 1
    line = [r for r in caplog.records if r.name == "firsttag.access"][-1]
    assert line.fields["path"] == "/api/v1/beacon" and line.fields["status"] == 202
    assert line.fields["site"] == site.id
    # A refusal still goes through Flask.
    assert _post(app.wsgi_app, "/api/v1/beacon", b"{", "10.9.9.9")[0] == "400 BAD REQUEST"
    assert dispatched == ["flask"]


def test_a_refused_admit_is_answered_by_flask_without_charging_twice(config, site):
    # Three requests a minute per client, room for one event: the first is queued, the
    # next two find the backlog full (which spends the limits, as a refused push always
    # did), the fourth is over the client's limit. Had Flask repeated the fast path's
    # Redis call, the third would already be refused by the limit.
    app = create_app(dataclasses.replace(config, rate_per_ip=3, max_backlog=1))
    body = {**BODIES["/api/v1/beacon"][1], "siteKey": site.site_key}
    answers = []
    for n in range(4):
        raw = json.dumps({**body, "id": f"b{n}" * 8}).encode()
        answers.append(_post(app.wsgi_app, "/api/v1/beacon", raw, "10.8.8.8"))
    assert [a[0][:3] for a in answers] == ["202", "429", "429", "429"]
    codes = [json.loads(a[2])["error"]["code"] for a in answers[1:]]
    assert codes == ["backlog_full", "backlog_full", "rate_limited"]
    limited = dict(answers[3][1])
    assert limited["RateLimit-Remaining"] == "0" and int(limited["Retry-After"]) >= 1
    assert Redis.from_url(config.redis_url).llen(BUFFER_KEY) == 1


class _Pieces(io.RawIOBase):
    """A request body that arrives a few bytes per read, as some servers hand it over."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        piece, self.data = self.data[:7], self.data[7:]
        return piece


def test_a_body_read_in_pieces_is_whole(app, front, config, site):
    dispatched: list[str] = []
    app.before_request(lambda: dispatched.append("flask"))
    body = json.dumps({**BODIES["/api/v1/sessions"][1], "siteKey": site.site_key}).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/v1/sessions",
        "REMOTE_ADDR": "10.7.7.7",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": _Pieces(body),
    }
    answered: list = []
    out = b"".join(front(environ, lambda status, hs, exc=None: answered.append(status)))
    assert (
        answered == ["200 OK"]
        and json.loads(out)["sessionId"] == BODIES["/api/v1/sessions"][1]["sessionId"]
    )
    assert dispatched == []
    assert Redis.from_url(config.redis_url).llen(BUFFER_KEY) == 1
