"""Every JSON route's scope, walked from the app's own route table and OpenAPI schema: each
operation documents `x-required-scope`; a key without that scope is refused with 403
`insufficient_scope` and a key holding only it gets past the check; session-only routes refuse
every key; and docs/architecture.md's table of routes and scopes is the app's."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

from computebill.auth.dependencies import PUBLIC, SESSION_ONLY, json_routes
from computebill.auth.models import Scope
from tests.apikeys.helpers import ALL_SCOPES, create_key
from tests.support.http import Api

ARCHITECTURE = Path(__file__).parents[2] / "docs" / "architecture.md"
TABLE_ROW = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/api/v1/\S*)` \| `([\w:]+)` \|", re.M)
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def operations(app: Any) -> dict[tuple[str, str], str]:
    """(method, path) → x-required-scope, for every /api/v1 operation the schema documents."""
    schema = app.openapi()
    found = {}
    for path, item in schema["paths"].items():
        if path.startswith("/api/v1/"):
            for method, operation in item.items():
                found[(method.upper(), path)] = operation["x-required-scope"]
    return found


def concrete(path: str) -> str:
    """A path with its parameters filled in: ids that name nothing (a 404 passes the check)."""
    return re.sub(
        r"\{[^}]+\}", lambda m: "h100" if m.group(0) == "{slug}" else str(uuid.uuid4()), path
    )


async def test_every_json_route_documents_its_scope(api: Api) -> None:
    documented = operations(api.app)
    routes = [
        (method, route.path_format)
        for route in json_routes(api.app)
        if (route.path_format or "").startswith("/api/v1/")
        for method in route.methods or ()
    ]
    assert sorted(routes) == sorted(documented)  # no JSON route is left out of the schema
    allowed = {PUBLIC, SESSION_ONLY, *(scope.value for scope in Scope)}
    assert set(documented.values()) <= allowed
    # The writes that move money or machines need their own scope, never just `read`.
    assert documented[("POST", "/api/v1/instances")] == "instances:write"
    assert documented[("POST", "/api/v1/credits/top-ups")] == "billing:write"
    assert documented[("POST", "/api/v1/api-keys")] == SESSION_ONLY
    assert all(scope != "read" for (method, _), scope in documented.items() if method in WRITES)


async def test_the_architecture_table_lists_every_routes_scope(api: Api) -> None:
    table = {(m, p): s for m, p, s in TABLE_ROW.findall(ARCHITECTURE.read_text())}
    assert table == operations(api.app)


async def test_each_route_refuses_a_key_without_its_scope_and_admits_one_with_it(
    api: Api, email: str
) -> None:
    pair = await api.sign_up(email)
    session = pair["access_token"]
    everything = (await create_key(api, session))["key"]
    only = {scope: (await create_key(api, session, [scope]))["key"] for scope in ALL_SCOPES}
    without = {
        scope: (await create_key(api, session, [s for s in ALL_SCOPES if s != scope]))["key"]
        for scope in ALL_SCOPES
    }
    checked = set()
    for (method, path), scope in sorted(operations(api.app).items()):
        url = concrete(path)
        body: dict[str, Any] | None = {} if method in WRITES else None
        if scope == PUBLIC:
            continue
        if scope == SESSION_ONLY:
            refused = await api.call(method, url, everything, body)
            assert refused.status_code == 403, (method, path, refused.text)
            assert refused.json()["code"] == "api_key_not_allowed", (method, path)
        else:
            refused = await api.call(method, url, without[scope], body)
            assert refused.status_code == 403, (method, path, refused.text)
            assert refused.json()["code"] == "insufficient_scope", (method, path)
            admitted = await api.call(method, url, only[scope], body)
            assert admitted.status_code not in {401, 403}, (method, path, admitted.text)
        checked.add(scope)
    assert checked == {SESSION_ONLY, *ALL_SCOPES}
