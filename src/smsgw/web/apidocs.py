"""The API documentation page's content, built from the live OpenAPI document.

Every operation of `app.openapi()` is listed under its first tag, in the order the seed
document uses; tags without routes yet simply do not appear until their routes exist.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from smsgw.web.examples import EXAMPLES, Example

GROUP_ORDER = ["Messages", "Devices", "Webhooks", "Inbox", "Opt-outs", "Settings", "Auth", "Health"]
METHODS = ("get", "post", "put", "patch", "delete")
MAX_DEPTH = 4


@dataclass
class Field:
    name: str
    where: str
    type: str
    required: bool
    description: str


@dataclass
class Operation:
    id: str
    method: str
    path: str
    summary: str
    description: str
    deprecated: bool
    secured: bool
    parameters: list[Field]
    body_fields: list[Field]
    request: str
    curl: str
    status: str
    response: str
    responses: list[tuple[str, str]]


@dataclass
class Group:
    name: str
    operations: list[Operation] = field(default_factory=list)


class Resolver:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.components = schema.get("components", {}).get("schemas", {})

    def __call__(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = self.components.get(node["$ref"].rsplit("/", 1)[-1], {})
        return node

    def type_of(self, node: dict[str, Any]) -> str:
        node = self(node)
        options = node.get("anyOf") or node.get("oneOf")
        if options:
            return " or ".join(self.type_of(o) for o in options if o.get("type") != "null")
        if "enum" in node:
            return " | ".join(str(v) for v in node["enum"])
        if node.get("type") == "array":
            return f"array of {self.type_of(node.get('items', {}))}"
        return str(node.get("format") or node.get("type") or node.get("title") or "object")

    def sample(self, node: dict[str, Any], depth: int = 0) -> Any:
        """A plausible value for a schema (used where no example was written)."""
        node = self(node)
        if node.get("examples"):
            return node["examples"][0]
        options = [
            o for o in node.get("anyOf") or node.get("oneOf") or [] if o.get("type") != "null"
        ]
        if options:
            return self.sample(options[0], depth)
        kind = node.get("type")
        if "enum" in node:
            return node["enum"][0]
        if kind == "object" or "properties" in node:
            if depth >= MAX_DEPTH:
                return {}
            props = node.get("properties", {})
            return {name: self.sample(sub, depth + 1) for name, sub in props.items()}
        if kind == "array":
            return [self.sample(node.get("items", {}), depth + 1)]
        return {"integer": 0, "number": 0, "boolean": True}.get(str(kind), _string(node))


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_ITEM = re.compile(r"^\s*[-*] ", re.M)


def markdown(text: str | None) -> Markup:
    """The little Markdown that descriptions use (`code`, **bold**, paragraphs, `- ` list
    items) as HTML; everything else is escaped. Descriptions come from docstrings and
    `Field(description=...)`, written for Markdown readers such as Swagger UI."""
    html = str(escape(text or ""))
    html = _CODE.sub(r"<code>\1</code>", html)
    html = _BOLD.sub(r"<strong>\1</strong>", html)
    html = _ITEM.sub("<br>• ", html)
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", html) if p.strip()]
    return Markup("</p><p>".join(paragraphs))  # noqa: S704 (escaped above)


def _string(node: dict[str, Any]) -> str:
    return "2026-05-17T09:32:11.421Z" if node.get("format") == "date-time" else "string"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def _body_schema(operation: dict[str, Any]) -> dict[str, Any] | None:
    content = operation.get("requestBody", {}).get("content", {})
    media = content.get("application/json")
    return media.get("schema") if media else None


def _body_fields(resolve: Resolver, schema: dict[str, Any] | None) -> list[Field]:
    if schema is None:
        return []
    node = resolve(schema)
    required = set(node.get("required", []))
    return [
        Field(
            name,
            "body",
            resolve.type_of(sub),
            name in required,
            resolve(sub).get("description", ""),
        )
        for name, sub in node.get("properties", {}).items()
        if not resolve(sub).get("deprecated")
    ]


def _parameters(resolve: Resolver, operation: dict[str, Any]) -> list[Field]:
    return [
        Field(
            p["name"], p["in"], resolve.type_of(p.get("schema", {})), bool(p.get("required")),
            p.get("description") or resolve(p.get("schema", {})).get("description", ""),
        )
        for p in operation.get("parameters", [])
    ]  # fmt: skip


def _success(operation: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    for status, answer in sorted(operation.get("responses", {}).items()):
        if status.startswith("2"):
            media = answer.get("content", {}).get("application/json")
            return status, media.get("schema") if media else None
    return "200", None


def _curl(base: str, method: str, path: str, query: str, body: Any, secured: bool) -> str:
    url = base + path + (f"?{query}" if query else "")
    lines = [f"curl -X {method} {url}" if method != "GET" else f'curl "{url}"']
    if secured:
        lines.append("-u LOGIN:PASSWORD")
    if body is not None:
        lines.append('-H "Content-Type: application/json"')
        lines.append(f"-d '{json.dumps(body, ensure_ascii=False)}'")
    return " \\\n  ".join(lines)


def _beyond(summary: str, op: dict[str, Any]) -> str:
    """The description without a first sentence that only repeats the summary (the page
    shows the summary in bold just before it)."""
    description = str(op.get("description", ""))
    first, dot, rest = description.partition(". ")
    if summary and dot and first.strip().rstrip(".").lower() == summary.lower():
        return rest
    return description


def operation_of(
    resolve: Resolver, base: str, path: str, method: str, op: dict[str, Any]
) -> Operation:
    example = EXAMPLES.get(op.get("operationId", ""), Example())
    body_schema = _body_schema(op)
    body = (
        example.body
        if example.body is not None
        else (resolve.sample(body_schema) if body_schema else None)
    )
    status, answer_schema = _success(op)
    response = (
        example.response
        if example.response is not None
        else (resolve.sample(answer_schema) if answer_schema else None)
    )
    shown_path = path
    for name, value in example.path.items():
        shown_path = shown_path.replace("{" + name + "}", value)
    secured = bool(op.get("security"))
    return Operation(
        id=op.get("operationId", f"{method}{path}"), method=method.upper(), path=path,
        summary=op.get("summary", ""), description=_beyond(op.get("summary", ""), op),
        deprecated=bool(op.get("deprecated")), secured=secured,
        parameters=_parameters(resolve, op), body_fields=_body_fields(resolve, body_schema),
        request=_pretty(body) if body is not None else "",
        curl=_curl(base, method.upper(), shown_path, example.query, body, secured),
        status=status, response=_pretty(response) if response is not None else "",
        responses=[(s, a.get("description", "")) for s, a in op.get("responses", {}).items()],
    )  # fmt: skip


def groups_of(schema: dict[str, Any], base: str) -> list[Group]:
    """Every operation of the document, grouped by tag in the seed's order."""
    resolve = Resolver(schema)
    groups: dict[str, Group] = {}
    for path, item in schema.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            tag = (op.get("tags") or ["Other"])[0]
            groups.setdefault(tag, Group(tag)).operations.append(
                operation_of(resolve, base, path, method, op)
            )

    def rank(name: str) -> tuple[int, str]:
        return (GROUP_ORDER.index(name) if name in GROUP_ORDER else len(GROUP_ORDER), name)

    return [groups[name] for name in sorted(groups, key=rank)]


#: A line under a group's heading, where the operations alone do not say enough.
GROUP_NOTES = {
    "Mobile": "The phones' API, called by the SMS Gateway for Android app with its device "
    "token (`Authorization: Bearer TOKEN`, issued at registration); applications do not "
    "need it.",
}


def security_schemes(schema: dict[str, Any]) -> list[tuple[str, str]]:
    """(name, how to use it) of every security scheme the document declares."""
    schemes = schema.get("components", {}).get("securitySchemes", {})
    return [(name, _describe(scheme)) for name, scheme in schemes.items()]


def _describe(scheme: dict[str, Any]) -> str:
    if scheme.get("description"):
        return str(scheme["description"])
    kind = str(scheme.get("scheme") or scheme.get("type", "")).lower()
    if kind == "basic":
        return "HTTP Basic: your smsgw login and password (curl -u LOGIN:PASSWORD)."
    if kind == "bearer":
        token = scheme.get("bearerFormat", "token")
        return f"HTTP Bearer: Authorization: Bearer <{token}>."
    return kind
