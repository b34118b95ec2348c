"""Property-based fuzzing of the generated OpenAPI document with schemathesis: no
request, valid or not, gets a 500, and every response matches what the document
declares (status code, media type, headers, body schema). The document describes
what the API accepts: a request it calls invalid is refused (negative data
rejection), and one it calls valid is not refused with a 4xx such as 422 (positive
data acceptance), except where the document cannot say it (``NOT_DESCRIBABLE``).

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
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from taskmgr.testing import make_test_service
from tests.http.conftest import ACTION, ADMIN, OPERATIONS, build_app, register_all

MAX_EXAMPLES = 20
NO_INPUT = {
    "taskmgr_list_instances",
    "taskmgr_list_pauses",
    "taskmgr_resume_service",
    "taskmgr_list_queues",
    "taskmgr_get_health",
    "taskmgr_get_session",
}
#: Operations whose valid requests depend on more than a schema can say: a job names a
#: function registered in code, a cron expression has a grammar of its own, arguments
#: must fit the function's signature. A 422 there is still checked to be a problem
#: document by the other checks.
#: Pauses and backfills depend on the time of the request: a pause's until must be in the
#: future, a backfill's range in the past and hold no more slots than max_runs; a
#: maintenance window must be one-off or recurring, not over, and overlap no other.
NOT_DESCRIBABLE = {
    "taskmgr_create_job",
    "taskmgr_update_job",
    "taskmgr_pause_job",
    "taskmgr_pause_queue",
    "taskmgr_pause_service",
    "taskmgr_backfill_job",
    "taskmgr_add_window",
}
#: Opaque values only the API issues: a generated one is well formed but names no page.
ISSUED_ONLY = {"cursor"}
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
        # with the action header, as the dashboard sends it: writes without a body
        # reach the routes (without it they are refused, tests/http/test_csrf.py)
        yield schemathesis.openapi.from_asgi("/openapi.json", app, headers={**ADMIN, **ACTION})
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
    if mode is GenerationMode.NEGATIVE:
        checks = [*CHECKS, negative_data_rejection]
    elif operation_id in NOT_DESCRIBABLE:
        checks = CHECKS
    else:
        checks = [*CHECKS, positive_data_acceptance]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        if mode is GenerationMode.POSITIVE and isinstance(case.query, dict):
            for name in ISSUED_ONLY:
                case.query.pop(name, None)
        case.call_and_validate(headers=ADMIN, checks=checks)

    run()
