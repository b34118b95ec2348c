"""Property-based fuzzing of the generated OpenAPI document with schemathesis: no
request, valid or not, gets a 500, and every response matches what the document
declares (status code, media type, headers, body schema).

Driven with hypothesis directly, one test per operation: schemathesis' pytest
plugin (``from_fixture``) does not work with pytest 9. Bounded by
``MAX_EXAMPLES`` per operation and generation mode so the HTTP suite stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from taskmgr.testing import make_test_service
from tests.http.conftest import ADMIN, OPERATIONS, build_app, register_all

MAX_EXAMPLES = 20
NO_INPUT = {
    "taskmgr_list_instances",
    "taskmgr_list_queues",
    "taskmgr_get_health",
    "taskmgr_get_session",
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api_schema() -> Iterator[schemathesis.BaseSchema]:
    service = register_all(make_test_service())
    service.start()
    try:
        app = build_app(service)
        yield schemathesis.openapi.from_asgi("/openapi.json", app, headers=ADMIN)
    finally:
        service.shutdown()


def test_every_operation_is_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    paths = api_schema.raw_schema["paths"]
    found = {operation["operationId"] for item in paths.values() for operation in item.values()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("operation_id", OPERATIONS)
def test_no_500_and_responses_match_the_schema(
    api_schema: schemathesis.BaseSchema, operation_id: str, mode: GenerationMode
) -> None:
    if mode is GenerationMode.NEGATIVE and operation_id in NO_INPUT:
        pytest.skip("no parameters or body to make invalid")
    operation = api_schema.find_operation_by_id(operation_id)  # type: ignore[attr-defined]
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=ADMIN, checks=checks)

    run()
