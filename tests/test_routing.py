"""Routes added flat (api/routing.py) are served and documented as the included router's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, routing
from fastapi.routing import APIRoute

from smsgw.api.apps import build_router
from smsgw.api.mobile import build_router as build_mobile_router
from smsgw.api.routing import add_routes

pytestmark = pytest.mark.one_engine("no database")  # conftest.py

if not hasattr(routing, "iter_route_contexts"):  # FastAPI before 0.16x: nothing is nested
    pytest.skip("include_router adds routes flat itself", allow_module_level=True)
BUILDERS = {"3rdparty": build_router, "mobile": build_mobile_router}


def served(app: FastAPI) -> list[tuple[Any, ...]]:
    """What matching, handling and url_path_for see of each route, in order."""
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
        for route in routing.iter_route_contexts(app.router.routes)
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
