"""Scopes: every 3rd-party route is in the one table, and a token lacking its scope is refused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from smsgw.api.scopes import PUBLIC, ROUTE_SCOPES, relative_path, scope_for
from smsgw.app import THIRDPARTY_PREFIXES, create_app
from smsgw.tokens.scopes import ALL, KNOWN, REFRESH, grants
from tests.clients import TLS
from tests.conftest import Account, LiveServer, make_settings, module_settings, running

BODIES: dict[str, Any] = {"POST": {}, "PUT": {}, "PATCH": {}}


def mounted_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, full path template) of every route the application serves."""
    try:  # FastAPI >= 0.16x keeps included routers nested; this walks them
        from fastapi.routing import iter_route_contexts

        routes: list[Any] = list(iter_route_contexts(app.routes))
    except ImportError:  # older FastAPI: app.routes is flat
        routes = list(app.routes)
    found = set()
    for route in routes:
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":
                found.add((method, str(route.path_format)))
    return found


def app_api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, template relative to the 3rd-party prefix) of the mounted 3rd-party routes."""
    found = set()
    for method, path in mounted_routes(app):
        relative = relative_path(path)
        if relative is not None:
            found.add((method, relative))
    return found


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    return create_app(make_settings(tmp_path_factory.mktemp("scopes") / "data"))


def test_every_mounted_route_of_the_apps_api_has_an_entry_in_the_scope_table(app: FastAPI) -> None:
    routes = app_api_routes(app)
    assert ("GET", "/messages") in routes  # the walk finds routes at all
    assert not routes - ROUTE_SCOPES.keys(), "add these routes to api/scopes.py ROUTE_SCOPES"
    prefixes = {path.split("/3rdparty/v1")[0] + "/3rdparty/v1" for _, path in mounted_routes(app)}
    assert prefixes >= set(THIRDPARTY_PREFIXES)


def test_the_table_names_only_known_scopes() -> None:
    assert set(ROUTE_SCOPES.values()) <= KNOWN | {REFRESH, PUBLIC}


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/api/3rdparty/v1/messages/abc", "messages:read"),
        ("HEAD", "/3rdparty/v1/messages/abc", "messages:read"),
        ("POST", "/api/3rdparty/v1/messages/inbox/export", "messages:export"),
        ("GET", "/api/3rdparty/v1/webhooks/w1/deliveries", "webhooks:list"),
        ("DELETE", "/api/3rdparty/v1/auth/token/abc", "tokens:manage"),
        ("GET", "/api/3rdparty/v1/health/ready", PUBLIC),
        ("GET", "/api/3rdparty/v1/not-listed", ALL),
        ("GET", "/api/mobile/v1/device", ALL),
    ],
)
def test_a_request_path_finds_its_scope(method: str, path: str, scope: str) -> None:
    assert scope_for(method, path) == scope


def test_the_wildcard_grants_everything_but_the_refresh_scope() -> None:
    assert grants({ALL}, "messages:send")
    assert not grants({ALL}, REFRESH)
    assert grants({REFRESH}, REFRESH)
    assert not grants({"messages:read"}, "messages:send")


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory, engine: str, request: pytest.FixtureRequest
) -> Iterator[tuple[LiveServer, Account]]:
    settings = module_settings(tmp_path_factory.mktemp("live") / "data", engine, request)
    with running(settings) as server:
        yield server, server.create_user("carol")


def token(live: tuple[LiveServer, Account], scopes: list[str]) -> dict[str, str]:
    server, account = live
    with server.client(account) as api:
        response = api.post("/auth/token", json={"scopes": scopes})
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


def call(server: LiveServer, method: str, template: str, **kwargs: Any) -> httpx.Response:
    path = re.sub(r"\{[^}]+\}", "no-such-id", template)
    with httpx.Client(base_url=server.api, timeout=30, verify=TLS) as client:
        return client.request(method, path, json=BODIES.get(method), **kwargs)


def mounted_entries() -> list[tuple[str, str, str]]:
    app = create_app(make_settings(Path("/nonexistent-never-started")))
    mounted = app_api_routes(app)
    return sorted((m, p, s) for (m, p), s in ROUTE_SCOPES.items() if (m, p) in mounted)


ENTRIES = mounted_entries()


@pytest.mark.parametrize(("method", "template", "scope"), ENTRIES)
def test_a_token_lacking_the_routes_scope_is_refused_with_403(
    live: tuple[LiveServer, Account], method: str, template: str, scope: str
) -> None:
    server, _ = live
    if scope == PUBLIC:
        assert call(server, method, template).status_code not in (401, 403)
        return
    others = sorted(KNOWN - {scope, ALL})
    lacking = token(live, others)["access_token"]
    refused = call(server, method, template, headers={"Authorization": f"Bearer {lacking}"})
    assert refused.status_code == 403
    assert refused.json() == {"message": f"scope required: {scope}"}
    pair = token(live, [scope] if scope != REFRESH else ["messages:list"])
    holding = pair["access_token"] if scope != REFRESH else pair["refresh_token"]
    allowed = call(server, method, template, headers={"Authorization": f"Bearer {holding}"})
    assert allowed.status_code not in (401, 403), allowed.text


@pytest.mark.parametrize(("method", "template", "scope"), ENTRIES)
def test_basic_credentials_hold_every_scope_but_refresh(
    live: tuple[LiveServer, Account], method: str, template: str, scope: str
) -> None:
    server, account = live
    answer = call(server, method, template, auth=(account.login, account.password))
    if scope == REFRESH:
        assert answer.json() == {"message": f"scope required: {REFRESH}"}
    else:
        assert answer.status_code not in (401, 403), answer.text


def test_without_credentials_a_scoped_route_is_401(live: tuple[LiveServer, Account]) -> None:
    server, _ = live
    answer = call(server, "GET", "/messages")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic")


def test_openapi_declares_basic_and_bearer_on_app_api_routes(app: FastAPI) -> None:
    schema = app.openapi()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["basicAuth"] == {"type": "http", "scheme": "basic"}
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    listing = schema["paths"]["/api/3rdparty/v1/messages"]["get"]
    assert {name for entry in listing["security"] for name in entry} == {"basicAuth", "bearerAuth"}
    refresh = schema["paths"]["/api/3rdparty/v1/auth/token/refresh"]["post"]
    assert refresh["security"] == [{"bearerAuth": []}]
