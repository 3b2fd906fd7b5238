"""The published OpenAPI document, told the truth: which operations take which credentials,
and the error answers every operation can give (400 with `{"message"}`, never 422)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI

from smsgw.api import mobile, scopes
from smsgw.api.routing import MOBILE_PREFIXES
from smsgw.config import Settings
from smsgw.messages.schemas import ErrorBody

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
#: Answers any operation can give (api/errors.py), documented where a route did not say.
GENERIC_ERRORS = {
    "400": "A parameter or the body is invalid or malformed; the message says which.",
    "413": "The request body is larger than the server accepts.",
    "500": "An unexpected server error; it is logged.",
}


THIRDPARTY_SECURITY = {
    "basicAuth": {"type": "http", "scheme": "basic"},
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from `POST /auth/token` (a JWT), or a named API key "
        "from `POST /auth/keys` (`smsgw_...`): both hold only the scopes they were given.",
    },
}
SECURITY_SCHEMES = {**THIRDPARTY_SECURITY, **mobile.SECURITY_SCHEMES}


def _document_mobile_security(schema: dict[str, Any], anonymous_registration: bool) -> None:
    """The phone's operations: a phone token, unless the mobile API's table says otherwise."""
    prefix = MOBILE_PREFIXES[0]
    for path, path_item in schema.get("paths", {}).items():
        if not path.startswith(prefix + "/"):
            continue
        for method, operation in path_item.items():
            if method in HTTP_METHODS:
                security = mobile.SECURITY.get((method, path[len(prefix) :]), mobile.PHONE)
                operation["security"] = list(security)
    registration = schema.get("paths", {}).get(f"{prefix}/device", {}).get("post")
    if registration is not None and anonymous_registration:
        registration["security"].append({})


def document_security(schema: dict[str, Any], anonymous_registration: bool) -> dict[str, Any]:
    """Say which operations take which credentials, in place: every 3rd-party operation but
    the public ones of the scope table (api/scopes.py) takes Basic or a Bearer JWT, unless the
    route declared its own (the refresh route takes a Bearer token only); the phone's
    operations as the mobile API says (api/mobile/__init__.py)."""
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, path_item in schema.get("paths", {}).items():
        relative = scopes.relative_path(path)
        if relative is None:
            continue
        for method, operation in path_item.items():
            key = (method.upper(), relative)
            if method in HTTP_METHODS and scopes.ROUTE_SCOPES.get(key) != scopes.PUBLIC:
                operation.setdefault("security", [{name: []} for name in THIRDPARTY_SECURITY])
    _document_mobile_security(schema, anonymous_registration)
    return schema


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Make the OpenAPI document tell the truth about error answers, in place.

    FastAPI documents a 422 `HTTPValidationError` for every route with inputs, but smsgw
    answers validation failures with 400 and `{"message"}`: drop the 422s, and add the
    errors any route can give (400, 401/429 when it needs credentials, 403 when a scoped
    token can call it, 413, 500) where missing.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            wanted = dict(GENERIC_ERRORS)
            security = operation.get("security") or []
            if security:
                wanted["401"] = "Missing or wrong credentials."
                wanted["429"] = "Too many failed sign-ins; try again after `Retry-After` seconds."
            if any("bearerAuth" in requirement for requirement in security):
                wanted["403"] = "The token lacks the scope this needs (`scope required: ...`)."
            for status, description in wanted.items():
                responses.setdefault(
                    status,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": ERROR_REF}},
                    },
                )
            operation["responses"] = dict(sorted(responses.items()))
    for name in ("HTTPValidationError", "ValidationError"):  # in this order: one uses the other
        rest = {key: value for key, value in components.items() if key != name}
        if f'"#/components/schemas/{name}"' not in json.dumps([schema.get("paths"), rest]):
            components.pop(name, None)
    components.setdefault("ErrorBody", ErrorBody.model_json_schema())
    return schema


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Serve the document FastAPI generates, with credentials and errors documented (built
    once, on the first request for it)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = document_security(generate(), settings.anonymous_registration)
            app.openapi_schema = document_errors(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
