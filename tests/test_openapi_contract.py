"""Property-based contract test: schemathesis generates requests (valid and invalid) from the
server's own /openapi.json and checks that nothing answers 5xx and every response matches the
documented schema, status codes and content types."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from lmnb.server import Server

# Fuzzed requests may ask for thousands of tokens; cap valid values so a run stays bounded in
# time (values over the schema's maximum are left alone: they must be rejected); a request that
# gives no limit (or -1) gets the cap too.
CAPS = {"max_tokens": (8, None), "max_completion_tokens": (8, None), "max_output_tokens": (8, None), "n": (2, 16)}
LIMITS = {"max_tokens", "max_completion_tokens", "max_output_tokens"}


@pytest.fixture(scope="module")
def api_schema(engine):
    import lmnb

    lmnb.load(engine.info.path, n_ctx=512)  # small context: the worst case (context full) is quick
    srv = Server("127.0.0.1", 0)
    try:
        yield schemathesis.openapi.from_url(srv.url.removesuffix("/v1") + "/openapi.json")
    finally:
        srv.stop()
        lmnb.load(engine.info.path, n_ctx=2048)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_openapi_contract(case):
    if isinstance(case.body, dict):
        # the default length is "until the context is full"
        if ("messages" in case.body or "prompt" in case.body) and not LIMITS & set(case.body):
            case.body["max_tokens"] = CAPS["max_tokens"][0]
        if case.path.endswith("/responses") and "max_output_tokens" not in case.body:
            case.body["max_output_tokens"] = CAPS["max_output_tokens"][0]
        for key, (cap, maximum) in CAPS.items():
            value = case.body.get(key)
            if not isinstance(value, int) or isinstance(value, bool):
                continue
            if cap < value <= (maximum or value) or (key == "max_tokens" and value == -1):  # -1: no limit
                case.body[key] = cap
    case.call_and_validate(
        checks=[
            not_a_server_error,
            response_schema_conformance,
            status_code_conformance,
            content_type_conformance,
            negative_data_rejection,
        ],
        timeout=60,
    )
