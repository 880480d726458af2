"""Every operation of our OpenAPI document, fuzzed: bad input is a JSON 4xx, never a 5xx.

Schemathesis generates requests from the document the app serves (built from
server/schemas.py), valid and invalid, and they go through the real app with real keys.
"""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


# CI runs a fixed, reproducible set of examples; developer machines explore new ones.
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=bool(os.environ.get("CI")),
)
@given(data=st.data())
def test_no_input_makes_a_server_error(app, site_and_secret, data):
    site, secret = site_and_secret
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    operation = data.draw(st.sampled_from(operations), label="operation")
    case = data.draw(operation.as_strategy(), label="case")
    # Real keys, so that generated bodies get past authentication into validation.
    key = site.site_key if case.path == "/api/v1/sessions/convert" else secret
    if isinstance(case.body, dict) and "siteKey" in case.body:
        case.body["siteKey"] = site.site_key
    response = case.call(headers={"Authorization": f"Bearer {key}"})
    assert response.status_code < 500, (case.method, case.path, case.body, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"] and error["message"]
