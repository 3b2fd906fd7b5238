"""Routes added flat (api/routing.py) are served and documented as the included router's."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, routing
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match

from smsgw.api.apps import build_router
from smsgw.api.mobile import build_router as build_mobile_router
from smsgw.api.routing import MOBILE_PREFIXES, THIRDPARTY_PREFIXES, add_routes, moved_route
from smsgw.app import create_app
from smsgw.config import Settings

pytestmark = pytest.mark.one_engine("no database")  # conftest.py

if not hasattr(routing, "iter_route_contexts"):  # FastAPI before 0.16x: nothing is nested
    pytest.skip("include_router adds routes flat itself", allow_module_level=True)
BUILDERS = {"3rdparty": build_router, "mobile": build_mobile_router}


def served(app: FastAPI) -> list[tuple[Any, ...]]:
    """What matching, handling and url_path_for see of each route, in order."""
    return served_routes(app.router.routes)


def served_routes(routes: Sequence[BaseRoute]) -> list[tuple[Any, ...]]:
    """What matching, handling and url_path_for see of each of these routes, in order."""
    return [
        (
            route.path_format,
            route.methods,
            route.name,
            route.endpoint,
            route.include_in_schema,
            [dependency.call for dependency in route.dependant.dependencies],
            [param.alias for param in route.dependant.query_params],
        )
        for route in routing.iter_route_contexts(routes)
        if isinstance(route.original_route, APIRoute)
    ]


@pytest.mark.parametrize("documented", [True, False])
@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_flat_routes_are_served_and_documented_as_the_included_router(
    kind: str, documented: bool
) -> None:
    build: Callable[[], APIRouter] = BUILDERS[kind]
    included, flat = FastAPI(), FastAPI()
    included.include_router(build(), prefix="/v1", include_in_schema=documented)
    add_routes(flat.router, build(), prefix="/v1", include_in_schema=documented)
    assert served(flat) == served(included)
    assert flat.openapi() == included.openapi()
    flat_routes = [route for route in flat.router.routes if isinstance(route, APIRoute)]
    assert len(flat_routes) == len(served(included))  # the app's own: no included router


def api_routes_of(app: FastAPI) -> list[APIRoute]:
    prefixes = (*THIRDPARTY_PREFIXES, *MOBILE_PREFIXES)
    return [r for r in app.router.routes if isinstance(r, APIRoute) and r.path.startswith(prefixes)]


def test_each_application_serves_its_own_copies_of_routes_built_once(tmp_path: Path) -> None:
    """create_app builds the APIs' routes once a process (FastAPI analyses each route as it is
    added: 0.4-0.6 s an application, one for each test's server) and each application
    serves copies: as routes added to it directly are served, and what is set on one
    application's route (a test wraps a handler) reaches no other."""
    one = create_app(Settings(data_dir=tmp_path / "one"))
    two = create_app(Settings(data_dir=tmp_path / "two"))
    direct = FastAPI()
    for prefixes, build in (
        (THIRDPARTY_PREFIXES, build_router),
        (MOBILE_PREFIXES, build_mobile_router),
    ):
        for prefix in prefixes:
            add_routes(
                direct.router, build(), prefix=prefix, include_in_schema=prefix == prefixes[0]
            )

    def by_path(app: FastAPI) -> list[tuple[Any, ...]]:
        routes = served_routes(api_routes_of(app))
        return sorted(routes, key=lambda route: (route[0], sorted(route[1])))

    assert by_path(one) == by_path(two) == by_path(direct)
    pairs = list(zip(api_routes_of(one), api_routes_of(two), strict=True))
    assert all(a is not b and a.dependant is b.dependant for a, b in pairs)
    first = pairs[0][0]
    first.app = None  # type: ignore[assignment]
    assert pairs[0][1].app is not None


def test_routes_moved_to_another_prefix_match_there_as_routes_added_there() -> None:
    """`api_routes` analyses each API under its first prefix and serves the other prefix's
    routes moved (`moved_route`): each matches the same requests, with the same path
    parameters, as the route FastAPI would build under that prefix, and no longer matches
    under the first."""
    for kind, (first, other) in (("3rdparty", THIRDPARTY_PREFIXES), ("mobile", MOBILE_PREFIXES)):
        built, direct = APIRouter(), APIRouter()
        add_routes(built, BUILDERS[kind](), prefix=first, include_in_schema=True)
        add_routes(direct, BUILDERS[kind](), prefix=other, include_in_schema=False)
        moved = [moved_route(route, first, other) for route in built.routes]
        assert served_routes(moved) == served_routes(direct.routes)
        for route, there in zip(moved, direct.routes, strict=True):
            assert isinstance(route, APIRoute) and isinstance(there, APIRoute)
            path = re.sub(r"{(\w+)(:\w+)?}", "p-1", route.path)
            for method in sorted(route.methods):
                scope = {"type": "http", "path": path, "method": method}
                assert route.matches(scope) == there.matches(scope)
                assert route.matches(scope)[0] == Match.FULL
                assert route.matches(scope | {"path": first + path.removeprefix(other)})[0] == (
                    Match.NONE
                )
        original = built.routes[0]
        assert isinstance(original, APIRoute) and original.path.startswith(first)
        assert original.include_in_schema  # the original is untouched


def test_a_route_not_under_the_prefix_is_not_moved() -> None:
    route = APIRoute("/elsewhere/x", lambda: None)
    with pytest.raises(TypeError, match="not under /api/3rdparty/v1"):
        moved_route(route, THIRDPARTY_PREFIXES[0], THIRDPARTY_PREFIXES[1])
