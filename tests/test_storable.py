"""Property: "accepted" implies "stored". Bodies generated from the schemas, plus hostile
mutations, go over real HTTP to every write endpoint; every 2xx event is then stored by
the real worker, and every other answer is a 4xx JSON error (a 400 names its field).

Runs on SQLite, and on PostgreSQL with FIRSTTAG_TEST_DATABASE_URL (see conftest.py).
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

import pytest
import requests
import schemathesis
from firsttag import store
from firsttag.events import deadletters
from firsttag.events.buffer import BUFFER_KEY
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from redis import Redis
from sqlalchemy import select

from tests.support import wait_until
from tests.test_validation import BODIES

# Fields that make an event new: fresh values per request, so that most 2xx answers are
# new events the worker must store (duplicates and conflicts still happen by mutation).
_FRESH = ("id", "sessionId", "orderId", "invoiceId", "customerExternalId", "order_id")


class Raw:
    """A JSON literal that json.dumps cannot write: NaN, 1e400, 9e999999."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


def _nest(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = {"a": value}
    return value


# Mostly the known-hostile values; sometimes any value of another JSON type.
_HOSTILE = st.one_of(
    st.sampled_from(
        [
            Raw("NaN"),
            Raw("Infinity"),
            Raw("-Infinity"),
            Raw("1e400"),
            Raw("9e999999"),
            Raw("-1e309"),
            Raw("1" + "0" * 400),
            Raw("[" * 5_000 + "]" * 5_000),
            _nest("x", 40),
            "\x00",
            "a\x00b",
            "\ud800",
            "\u0661\u0662",
            "\u00b2",
            "0001-01-01T00:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "1999-12-31T23:59:59Z",
            "\u0662\u0660\u0662\u0666-04-10T12:34:56Z",
            "2026-W15-5T10:00:00Z",
            "x" * 300,
            "\u00e9" * 255,
            2**64,
            -1,
            1.5,
            True,
            None,
            [],
            {},
        ]
    ),
    st.sampled_from(
        [
            Raw("NaN"),
            Raw("1e400"),
            "\x00",
            "0001-01-01T00:00:00Z",
            Raw("[" * 5_000 + "]" * 5_000),
            Raw("9e999999"),
        ]
    ),
    st.text(max_size=20),
    st.integers(),
    st.floats(allow_nan=False),
)


def _dumps(body: Any) -> bytes:
    raws: list[str] = []

    def place(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.literal)
            return f"__raw{len(raws) - 1}__"
        raise TypeError(type(value))

    text = json.dumps(body, allow_nan=True, default=place)
    for i, literal in enumerate(raws):
        text = text.replace(f'"__raw{i}__"', literal)
    return text.encode()


@st.composite
def _request(draw: Any, operations: dict[str, Any]) -> tuple[str, Any]:
    path = draw(st.sampled_from(sorted(BODIES)))
    if draw(st.booleans()):
        case = draw(operations[path].as_strategy())
        body = case.body if isinstance(case.body, dict) else {}
        body = {**BODIES[path][1], **body}
    else:
        body = dict(BODIES[path][1])
    body.update({k: secrets.token_hex(8) for k in _FRESH if k in body})
    for _ in range(draw(st.sampled_from([0, 1, 1, 2]))):
        where = draw(st.sampled_from([*body, "metadata.k", "extra"]))
        value = draw(_HOSTILE)
        if where == "metadata.k":
            body["metadata"] = {"k": value}
        else:
            body[where] = value
    if draw(st.booleans()) and BODIES[path][0] == "sk" and "/v1/" in path:
        kind = {
            "/api/v1/track/lead": "lead",
            "/api/v1/track/sale": "sale",
            "/api/v1/events": "event",
            "/api/v1/conversions": "conversion",
        }[path]
        return "/api/v1/batch", {"events": [{"type": kind, "data": body}]}
    return path, body


def _stored(engine: Any, site_id: str, what: tuple[str, str]) -> bool:
    kind, key = what
    with engine.connect() as conn:
        if kind == "session":
            t = store.sessions
            query = select(t.c.id).where(t.c.site_id == site_id, t.c.session_id == key)
        elif key.startswith("customer:"):  # a deferred lead stores only its customer
            t = store.customers
            query = select(t.c.name).where(
                t.c.site_id == site_id, t.c.external_id == key.removeprefix("customer:")
            )
        else:
            t = store.conversions
            query = select(t.c.id).where(t.c.site_id == site_id, t.c.dedup_key == key)
        return conn.execute(query).first() is not None


def _acknowledged(path: str, body: Any, answer: Any) -> list[tuple[str, str]]:
    """What a 2xx answer promises will be stored."""
    if path == "/api/v1/sessions":
        return [("session", answer["sessionId"])]
    if path == "/api/v1/beacon":
        return [("conversion", f"browser:{answer['id']}")]
    if path == "/api/v1/batch":
        return [
            ("conversion", r["result"]["id"])
            for r in answer["results"]
            if r["status"] in ("accepted", "duplicate")
        ]
    return [("conversion", answer["id"])]


def _check_refusal(response: requests.Response) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["code"] and error["message"]
    if response.status_code == 400:
        assert error["fields"] and all(f["field"] for f in error["fields"]), error


@pytest.fixture
def operations(app: Any) -> dict[str, Any]:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    ops = {}
    for result in schema.get_all_operations():
        op = result.ok()
        if op.method.upper() == "POST" and op.path in BODIES:
            ops[op.path] = op
    return ops


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=bool(os.environ.get("CI")),  # CI: fixed examples; locally: new ones
)
@given(data=st.data())
def test_every_acknowledged_event_is_stored(
    live_url, worker, config, engine, site_and_secret, operations, data
):
    site, secret = site_and_secret
    redis = Redis.from_url(config.redis_url)
    promised: list[tuple[str, str]] = []
    for _ in range(data.draw(st.integers(1, 4))):
        path, body = data.draw(_request(operations))
        if body.get("siteKey") == "PK":
            body["siteKey"] = site.site_key
        browser = BODIES.get(path, ("sk",))[0] == "pk"
        headers = (
            {"Content-Type": "text/plain", "Origin": "https://shop.example"}
            if browser
            else {"Content-Type": "application/json", "Authorization": f"Bearer {secret}"}
        )
        response = requests.post(live_url + path, data=_dumps(body), headers=headers, timeout=30)
        event(f"HTTP {response.status_code}")
        if response.status_code < 300:
            promised += _acknowledged(path, body, response.json())
            if path == "/api/v1/batch":
                for r in response.json()["results"]:
                    if r["status"] == "rejected" and r["httpStatus"] == 400:
                        assert r["error"]["fields"], r
                    assert r["status"] != "retry", r
        else:
            _check_refusal(response)
    for what in promised:
        wait_until(lambda w=what: _stored(engine, site.id, w), 20, f"{what} stored")
    wait_until(lambda: redis.llen(BUFFER_KEY) == 0, 20, "the buffer drained")
    assert deadletters.count(redis) == 0, deadletters.letters(redis)
    # What was stored reads back as strict JSON: no NaN or Infinity for other parsers.
    stored = requests.get(
        live_url + "/api/v1/conversions?limit=500",
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert stored.status_code == 200, stored.text
    json.loads(stored.text, parse_constant=_not_json)


def _not_json(literal: str) -> None:
    raise AssertionError(f"{literal} in an API answer is not JSON")
