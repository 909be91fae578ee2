"""Schemathesis over the whole JSON API, against the real server (uvicorn in its own process).

Whatever it sends, the platform must never answer 5xx, and every 4xx must be problem+json as
`computebill.errors` builds it. Successful answers must match their documented schema.

- One test per operation, signed in as an ordinary user; again with an API key holding every
  scope; a pass over the admin operations as an admin; a pass with no credentials at all.
- Stateful: Schemathesis infers links between operations from the schema (FastAPI publishes no
  OpenAPI links), e.g. `POST /cart/items` → `PATCH`/`DELETE /cart/items/{item_id}`, and runs
  sequences of calls, each from the same start: a fresh admin with one line in the cart.

Reproducible: a fixed seed and Hypothesis' derandomized mode. Bounded: `MAX_EXAMPLES` per
operation in the fuzzing phase (the examples and coverage phases add their own, bounded cases).

Not asserted here: that 4xx answers are *documented* in the schema. They are not — FastAPI
documents a 422 as `application/json` `HTTPValidationError`, and 401/403/404/409 not at all — so
Schemathesis' conformance checks run on 2xx answers only.

The schema is built from `create_app` at import (Schemathesis 4.32's lazy `from_fixture` loader
fails on pytest 9.2: it sets `Function._nodeid`, which no longer exists), then given examples
for the configuration fields; `test_the_fuzzed_schema_is_the_one_served` proves it is otherwise
the one `/api/openapi.json` serves. NUL characters are left out of generated strings: PostgreSQL
cannot store them, and `test_bad_input.py` sends them to the stored fields on purpose.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import hypothesis
import schemathesis
from schemathesis import CheckContext, Response
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from computebill.errors import PROBLEM_JSON, PROBLEM_TYPE_BASE
from tests.fuzz.server import (
    CONFIGURATION_EXAMPLES,
    Server,
    User,
    make_admin,
    openapi_spec,
    sign_up,
)

Case = schemathesis.Case[Any]
SEED = 20_261_127
MAX_EXAMPLES = 20
STATEFUL_MAX_EXAMPLES = 25
STATEFUL_MAX_STEPS = 8


def _with_examples(spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` with known-good examples on the configuration fields, so that some generated quotes
    and cart lines are valid and the calls reach checkout and orders; nothing else differs."""
    fuzzed = copy.deepcopy(spec)
    for name in ("ConfigurationIn", "CartItemIn"):
        properties = fuzzed["components"]["schemas"][name]["properties"]
        for field, examples in CONFIGURATION_EXAMPLES.items():
            properties[field]["examples"] = examples
    return fuzzed


SPEC = openapi_spec()
schema = schemathesis.openapi.from_dict(
    _with_examples(SPEC),
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "allow-x00": False,
            },
        }
    ),
)
ADMIN_PATHS = r"^/api/v1/admin/"


# Checks ---------------------------------------------------------------------------------------


def problem_details(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx is application/problem+json with the fields `problem_response` writes."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type == PROBLEM_JSON, (
        f"{response.status_code} answered as {content_type!r}: {response.text[:300]}"
    )
    body = json.loads(response.text)
    assert body["status"] == response.status_code, body
    for field in ("code", "title", "detail"):
        assert isinstance(body[field], str), body
        assert body[field], body
    assert body["type"] == PROBLEM_TYPE_BASE + body["code"], body
    return True


def conforms_when_successful(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A 2xx has a documented status, content type and body."""
    if not 200 <= response.status_code < 300:
        return None
    for check in (status_code_conformance, content_type_conformance, response_schema_conformance):
        check(ctx, response, case)
    return True


CHECKS: list[CheckFunction] = [
    not_a_server_error,
    problem_details,
    conforms_when_successful,
    negative_data_rejection,
]


def call_and_check(case: Case, server: Server, headers: dict[str, str]) -> None:
    response = case.call(base_url=server.base_url, headers=headers, timeout=30)
    case.validate_response(response, checks=CHECKS, headers=headers)


# Stateless, one test per operation ------------------------------------------------------------


def test_the_fuzzed_schema_is_the_one_served(server: Server) -> None:
    served = httpx.get(f"{server.base_url}/api/openapi.json", timeout=30)
    assert served.status_code == 200
    assert served.json() == SPEC


@schema.parametrize()
def test_as_a_user(case: Case, server: Server, user: User) -> None:
    call_and_check(case, server, user.auth)


@schema.parametrize()
def test_with_an_api_key(case: Case, server: Server, key_holder: User) -> None:
    """Every operation again, called with an API key holding every scope: session-only ones
    answer 403 `api_key_not_allowed`, never 5xx, and the rest as for a session."""
    call_and_check(case, server, key_holder.auth)


@schema.include(path_regex=ADMIN_PATHS).parametrize()
def test_as_an_admin(case: Case, server: Server, admin: User) -> None:
    call_and_check(case, server, admin.auth)


@schema.parametrize()
@hypothesis.settings(max_examples=5)
def test_without_credentials(case: Case, server: Server) -> None:
    call_and_check(case, server, {})


# Stateful: sequences of calls along the inferred links ----------------------------------------


def test_stateful_sequences(server: Server) -> None:
    """Each sequence starts from the same state — a fresh admin (so refunds are reached too) with
    one line in the cart (so the cart, checkout and order links are walked) — as Hypothesis
    needs for the sequences to replay the same."""
    workflow = schema.as_state_machine()
    links = schema.statistic.transitions.total
    assert links > 0, "Schemathesis inferred no links between operations"

    class Workflow(workflow):  # type: ignore[misc, valid-type]
        headers: dict[str, str]

        def setup(self) -> None:
            account = sign_up(server, "fuzz-stateful")
            make_admin(server, account)
            self.headers = account.auth
            line = {key: values[0] for key, values in CONFIGURATION_EXAMPLES.items()}
            added = httpx.post(
                f"{server.base_url}/api/v1/cart/items", json=line, headers=self.headers, timeout=30
            )
            assert added.status_code == 201, added.text

        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"base_url": server.base_url, "headers": self.headers, "timeout": 30}

        def validate_response(
            self, response: Response, case: Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS, headers=self.headers)

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_MAX_EXAMPLES,
            stateful_step_count=STATEFUL_MAX_STEPS,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )
