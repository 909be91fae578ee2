"""Every request dependency of every route is a coroutine (or an async generator): FastAPI runs a
plain `def` dependency in its thread pool, which costs a thread hop on every request."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from computebill.app import create_app
from computebill.config import Settings


def _api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """The app's routes, through the routers it includes."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def test_no_route_depends_on_a_function_run_in_the_thread_pool(settings: Settings) -> None:
    app = create_app(settings)
    routes = list(_api_routes(app.routes))
    assert len(routes) > 40  # the JSON API and the pages
    blocking = {
        f"{route.path}: {call.__module__}.{call.__qualname__}"
        for route in routes
        for call in _calls(route.dependant)
        if not (inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call))
    }
    assert not blocking, sorted(blocking)
