"""Which way imports go (docs/architecture.md), read from the source's syntax tree: the faces
(api/, web/) over the services over db/ over domain/, and the faces apart from each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.one_engine("no database")  # conftest.py

SOURCE = Path(__file__).parent.parent / "src"
SERVICES = frozenset(
    {
        "accounts", "accountsettings", "devices", "messages", "routing", "inbox", "webhooks",
        "tokens", "apikeys", "logs", "health", "events",
    }
)  # fmt: skip
FACES = frozenset({"api", "web"})
ABOVE_SERVICES = FACES | {"workers", "cli", "app"}
#: The one module of db/ that collects the services' tables, for migrations.
TABLE_REGISTRY = "smsgw.db.tables"


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(module: str, source: str) -> set[str]:
    """The smsgw modules `source` (the text of `module`) imports, relative imports resolved."""
    found = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1]])
                base = f"{base}.{node.module}" if node.module else base
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "smsgw" or name.startswith("smsgw.")}


def layer(module: str) -> str:
    """`smsgw.api.apps.messages` -> `api`; a top-level module is its own layer."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def broken_rules(module: str, targets: set[str]) -> list[str]:
    """Every rule `module` breaks by importing `targets` (empty when it keeps them all)."""
    own, broken = layer(module), []
    for target in sorted(targets):
        other = layer(target)
        if other == own or other == "":
            continue
        if own == "domain":
            broken.append(f"{module} -> {target}: domain/ imports nothing of smsgw but itself")
        elif own in SERVICES and other in ABOVE_SERVICES:
            broken.append(f"{module} -> {target}: a service imports no face, worker or CLI")
        elif own in FACES and other in FACES:
            broken.append(f"{module} -> {target}: api/ and web/ import nothing of each other")
        elif own in FACES and other == "workers":
            broken.append(f"{module} -> {target}: a route publishes a signal, never calls a worker")
        elif own == "db" and other in SERVICES and module != TABLE_REGISTRY:
            broken.append(f"{module} -> {target}: db/ imports no service (but the table registry)")
    return broken


def test_the_code_keeps_every_import_rule() -> None:
    broken = []
    for path in sorted((SOURCE / "smsgw").rglob("*.py")):
        module = module_name(path)
        broken += broken_rules(module, imported(module, path.read_text(encoding="utf-8")))
    assert broken == []


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("smsgw.domain.states", "from smsgw.messages import service", "domain/"),
        ("smsgw.messages.service", "from smsgw.api.deps import Context", "a service imports"),
        ("smsgw.routing.service", "import smsgw.workers.loop", "a service imports"),
        ("smsgw.web.auth", "from smsgw.api import deps", "api/ and web/"),
        ("smsgw.api.mobile.device", "from smsgw.web import sessions", "api/ and web/"),
        ("smsgw.api.mobile.hooks", "from smsgw.workers import webhooks", "a route publishes"),
        ("smsgw.db.engine", "from smsgw.devices.models import Device", "db/ imports no service"),
        ("smsgw.api.apps.inbox", "from ...web import inbox", "api/ and web/"),
    ],
)
def test_each_rule_catches_its_kind_of_import(module: str, source: str, rule: str) -> None:
    broken = broken_rules(module, imported(module, source))
    assert broken and all(rule in line for line in broken)


def test_what_the_rules_allow_passes() -> None:
    allowed = {
        "smsgw.api.apps.messages": "from smsgw.messages import service",
        "smsgw.web.send": "from smsgw.routing import service as routing",
        "smsgw.messages.service": "from smsgw.db.engine import Database",
        "smsgw.db.tables": "from smsgw.devices.models import Device",
        "smsgw.workers.loop": "from smsgw.routing import service",
    }
    for module, source in allowed.items():
        assert broken_rules(module, imported(module, source)) == []
