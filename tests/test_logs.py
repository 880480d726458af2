"""One JSON log line per request and per drain batch, on stdout, and never a key in them."""

from __future__ import annotations

import json

import pytest
import requests
from firsttag.tag.install import install_link

from tests.support import ServerProcess, config_env, wait_until
from tests.test_tracking import selektable_order

ORIGIN = "https://shop.example"


@pytest.fixture
def served(config, site, tmp_path):
    env = config_env(config)
    env.update(FIRSTTAG_LOG_LEVEL="debug")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = ServerProcess(["serve", "--workers", "1"], env, tmp_path / "serve.log")
    server.start()
    yield server
    server.stop()


def test_requests_and_batches_are_logged_as_json_without_any_key(
    served, config, site_and_secret, tmp_path
):
    site, secret = site_and_secret
    url = served.url
    order = selektable_order("log_1")
    requests.post(
        f"{url}/api/webhooks/orders",
        json=order,
        headers={"Authorization": f"Bearer {secret}"},
        timeout=5,
    )
    wrong_key = "sk_" + "x" * 40
    requests.post(
        f"{url}/api/webhooks/orders?key={wrong_key}",
        json=order,
        headers={"Authorization": f"Bearer {wrong_key}"},
        timeout=5,
    )
    requests.get(f"{url}/{secret}", timeout=5)  # a key typed into a path: 404
    # Text a stranger puts where a site ID goes is not logged (found by an outside review).
    typed = "sk_live_typed_by_a_stranger"
    requests.get(f"{url}/t/%22%0Ainjected%20{typed}.js", timeout=5)
    requests.get(f"{url}/gtm/{typed}/custom-html", timeout=5)
    link = install_link(site, url, config.secret_key)
    token = link.split("token=", 1)[1]
    assert requests.get(link, timeout=5).status_code == 200
    registered = requests.post(
        f"{url}/api/v1/sessions",
        json={"siteKey": site.site_key, "visitorId": "v" * 32, "sessionId": "s" * 32},
        headers={"Origin": ORIGIN},
        timeout=5,
    ).json()
    session_key = registered["sessionKey"]
    requests.get(
        f"{url}/api/v1/sessions/{session_key}",
        headers={"Authorization": f"Bearer {secret}"},
        timeout=5,
    )

    def lines() -> list[dict]:
        out = []
        for raw in (tmp_path / "serve.log").read_text().splitlines():
            if raw.startswith("{"):
                out.append(json.loads(raw))
        return out

    def paths_logged(logged: list[dict]) -> set[tuple]:
        return {
            (line["method"], line["path"], line["status"])
            for line in logged
            if line.get("msg") == "request"
        }

    def complete() -> bool:
        logged = lines()
        paths = paths_logged(logged)
        return (
            any(line.get("msg") == "drain batch" for line in logged)
            and ("GET", f"/sites/{site.id}/install", 200) in paths
            and any(p[:2] == ("GET", "/api/v1/sessions/<session_key>") for p in paths)
        )

    # Each process writes its info lines in batches (logs.BatchedLineHandler, every 0.1 s,
    # each web process on its own): wait for the requests' lines, not only the batch line.
    wait_until(complete, 30, "the batch line and the requests' lines")
    logged = lines()
    requests_logged = [line for line in logged if line.get("msg") == "request"]
    paths = paths_logged(logged)
    assert ("POST", "/api/webhooks/orders", 200) in paths
    assert ("POST", "/api/webhooks/orders", 401) in paths
    assert ("GET", f"/sites/{site.id}/install", 200) in paths
    assert any(p[:2] == ("GET", "/api/v1/sessions/<session_key>") for p in paths)
    assert ("GET", "<unmatched>", 404) in paths or ("GET", "/<path:path>", 404) in paths
    order_line = next(
        line
        for line in requests_logged
        if line["path"] == "/api/webhooks/orders" and line["status"] == 200
    )
    assert order_line["site"] == site.id and order_line["durationMs"] >= 0
    batch = next(line for line in logged if line.get("msg") == "drain batch")
    assert batch["events"] >= 1 and batch["level"] == "info"

    text = (tmp_path / "serve.log").read_text()
    for secret_value in (secret, wrong_key, token, session_key, config.secret_key, typed):
        assert secret_value not in text


class _Pipe:
    """A stream that records each write: what reaches the pipe in one system call."""

    def __init__(self) -> None:
        self.writes: list[str] = []
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            self.writes.append(self._buffer)
            self._buffer = ""


def _batched_logger(name: str, stream: _Pipe, interval: float) -> tuple[object, object]:
    import logging

    from firsttag.logs import BatchedLineHandler, JsonFormatter

    handler = BatchedLineHandler(stream, interval=interval)  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel("INFO")
    return logger, handler


def test_info_lines_are_written_in_batches_of_whole_lines_within_the_interval():
    from firsttag.logs import WRITE_CHUNK

    stream = _Pipe()
    logger, handler = _batched_logger("firsttag.test.batched", stream, interval=0.05)
    for n in range(300):
        logger.info("request", extra={"fields": {"n": n, "path": "/api/v1/beacon"}})
    wait_until(lambda: sum(w.count("\n") for w in stream.writes) == 300, 5, "every line")
    # Fewer writes than lines, each at most a pipe's atomic size and made of whole lines.
    assert len(stream.writes) < 300
    assert all(len(w.encode()) <= WRITE_CHUNK and w.endswith("\n") for w in stream.writes)
    lines = [json.loads(line) for w in stream.writes for line in w.splitlines()]
    assert [line["n"] for line in lines] == list(range(300))  # in order, none lost
    handler.close()


def test_a_warning_is_written_at_once_with_the_lines_before_it():
    stream = _Pipe()
    logger, handler = _batched_logger("firsttag.test.urgent", stream, interval=3600)
    logger.info("first")
    assert stream.writes == []  # waits for the (here: hour-long) interval
    logger.warning("trouble")
    written = [json.loads(line)["msg"] for w in stream.writes for line in w.splitlines()]
    assert written == ["first", "trouble"]
    logger.info("last")
    handler.flush()  # as logging.shutdown does at exit
    assert json.loads(stream.writes[-1].splitlines()[-1])["msg"] == "last"
    handler.close()


def test_a_per_request_line_is_the_line_logging_would_print():
    import logging

    from firsttag.logs import info_line

    stream = _Pipe()
    logger, handler = _batched_logger("firsttag.test.direct", stream, interval=3600)
    fields = {"method": "POST", "path": "/api/v1/beacon", "status": 202, "site": "é"}
    logger.info("request", extra={"fields": fields})
    info_line(logger, "request", fields)  # type: ignore[arg-type]
    handler.flush()
    through_logging, direct = (json.loads(line) for line in stream.writes[-1].splitlines())
    assert through_logging.pop("time") and direct.pop("time")
    assert (
        direct
        == through_logging
        == {
            "level": "info",
            "logger": "firsttag.test.direct",
            "msg": "request",
            **fields,
        }
    )
    logger.setLevel("WARNING")  # type: ignore[attr-defined]
    info_line(logger, "request", fields)  # type: ignore[arg-type]
    handler.flush()
    assert len([line for w in stream.writes for line in w.splitlines()]) == 2
    handler.close()
    logging.getLogger("firsttag.test.direct").handlers.clear()


def test_a_per_request_line_reaches_any_other_handler_through_logging(caplog):
    import logging

    from firsttag.logs import info_line

    with caplog.at_level(logging.INFO, logger="firsttag.test.plain"):
        info_line(logging.getLogger("firsttag.test.plain"), "request", {"status": 202})
    [record] = caplog.records
    assert record.getMessage() == "request" and record.fields == {"status": 202}  # type: ignore[attr-defined]
