"""Serve a router's routes as the application's own, flat, instead of including the router.

FastAPI (>= 0.16x) keeps an included router as one node of the application's route list and
re-walks it on every request that reaches it (matching, then matching again to select, with
a version check of the whole router tree each time): about 8% of the CPU of
`POST /api/3rdparty/v1/messages`. The same routes added directly to the application are
matched like any top-level route. What the request sees, the OpenAPI document, the route
names (`url_path_for`) and the matching order are the same as with `include_router`.
"""

from __future__ import annotations

import copy

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, compile_path

#: Where each API is served: the first of each is the one documented.
THIRDPARTY_PREFIXES = ("/api/3rdparty/v1", "/3rdparty/v1")
MOBILE_PREFIXES = ("/api/mobile/v1", "/mobile/v1")


def add_routes(
    target: APIRouter, router: APIRouter, *, prefix: str, include_in_schema: bool
) -> None:
    """Add every route of `router` (walking the routers it includes) to `target` (an
    application's router, or one whose routes go to applications: app.py `api_routes`)
    under `prefix`, in order, as `target.include_router(router, prefix=...,
    include_in_schema=...)` would serve them. Only FastAPI routes are supported: anything
    else raises TypeError."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before 0.16x: include_router itself adds the routes flat
        target.include_router(router, prefix=prefix, include_in_schema=include_in_schema)
        return
    for route in iter_route_contexts(router.routes):
        original, path, endpoint = route.original_route, route.path, route.endpoint
        if not isinstance(original, APIRoute) or path is None or endpoint is None:
            raise TypeError(f"cannot add {route.path} flat: not a FastAPI route")
        if route.stream_item_type is not None:  # add_api_route would not carry it over
            raise TypeError(f"cannot add {route.path} flat: a streaming route")
        # The route as its routers made it (their dependencies, tags, responses...), FastAPI's
        # own resolution of the nesting.
        target.add_api_route(
            prefix + path,
            endpoint,
            response_model=route.response_model,
            status_code=route.status_code,
            tags=route.tags,
            dependencies=route.dependencies,
            summary=route.summary,
            description=route.description,
            response_description=route.response_description,
            responses=route.responses,
            deprecated=route.deprecated,
            methods=route.methods,
            operation_id=route.operation_id,
            response_model_include=route.response_model_include,
            response_model_exclude=route.response_model_exclude,
            response_model_by_alias=route.response_model_by_alias,
            response_model_exclude_unset=route.response_model_exclude_unset,
            response_model_exclude_defaults=route.response_model_exclude_defaults,
            response_model_exclude_none=route.response_model_exclude_none,
            include_in_schema=route.include_in_schema and include_in_schema,
            response_class=route.response_class,
            name=route.name,
            callbacks=route.callbacks,
            openapi_extra=route.openapi_extra,
            generate_unique_id_function=route.generate_unique_id_function,
            strict_content_type=route.strict_content_type,
            max_body_size=route.max_body_size,
            form_limits=original.form_limits,
        )


def moved_route(route: BaseRoute, prefix: str, to: str) -> APIRoute:
    """A copy of `route` (an APIRoute whose path starts with `prefix`) that serves the same
    path under `to` instead, out of the OpenAPI document: FastAPI's analysis of the route
    (its parameters, body and response models, its handler) depends on the path only
    through the path's parameters, which a prefix does not have, so the copy shares it.
    Its operation id stays the original's, unused out of the document."""
    if not isinstance(route, APIRoute) or not route.path.startswith(prefix):
        raise TypeError(f"cannot move {getattr(route, 'path', route)!r}: not under {prefix}")
    copied = copy.copy(route)
    copied.path = to + route.path.removeprefix(prefix)
    copied.path_regex, copied.path_format, copied.param_convertors = compile_path(copied.path)
    copied.include_in_schema = False
    return copied


def hot_first(app: FastAPI, paths: set[str]) -> None:
    """Move the routes of `paths` to the front of the matching order (keeping their own
    order): each route before a request's own costs it a match. Only for paths no other
    route's pattern matches, so that which route serves a request cannot change."""
    hot = [r for r in app.router.routes if isinstance(r, APIRoute) and r.path in paths]
    rest = [r for r in app.router.routes if r not in hot]
    app.router.routes[:] = hot + rest
