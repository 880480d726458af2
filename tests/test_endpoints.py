"""The endpoint registry is the one list: routes, batch kinds and documents agree with it."""

from __future__ import annotations

import typing

from firsttag.endpoints import BATCH_KINDS, ENDPOINTS, SERVER_KINDS, BatchItem, server_kind


def test_every_post_route_of_the_api_is_in_the_registry_and_back(app):
    routes = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if "POST" in rule.methods and rule.rule.startswith("/api/")
    }
    assert routes == {e.path for e in ENDPOINTS}


def test_each_server_kind_is_routed_to_its_own_view(app):
    # POST rules only: GET /api/v1/events is Dub's event list, another view on the path.
    views = {r.rule: r.endpoint for r in app.url_map.iter_rules() if "POST" in r.methods}
    for endpoint in SERVER_KINDS:
        assert endpoint.maker is not None, endpoint.kind
        # Dub's kinds have their own blueprint: errors there are answered in Dub's envelope.
        blueprint = "dub_track" if endpoint.kind in ("lead", "sale") else "tracking"
        assert views[endpoint.path] == f"{blueprint}.track_{endpoint.kind}"
        assert server_kind(endpoint.kind) is endpoint


def test_the_batch_accepts_exactly_the_batchable_kinds():
    assert typing.get_args(BatchItem.model_fields["type"].annotation) == BATCH_KINDS
    assert set(BATCH_KINDS) == {e.kind for e in SERVER_KINDS if e.batchable}


def test_kinds_and_paths_are_unique():
    assert len({e.kind for e in ENDPOINTS}) == len(ENDPOINTS)
    assert len({e.path for e in ENDPOINTS}) == len(ENDPOINTS)


def test_openapi_lists_each_endpoints_auth_and_success_codes(client):
    doc = client.get("/api/v1/openapi.json").get_json()
    for endpoint in ENDPOINTS:
        op = doc["paths"][endpoint.path]["post"]
        assert op["summary"] == endpoint.summary
        assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/" + endpoint.payload.__name__
        )
        for code in (*endpoint.ok, *endpoint.errors):
            assert str(code) in op["responses"], (endpoint.path, code)
        if endpoint.auth == "secret":
            assert op["security"] == [{"secretKey": []}]
