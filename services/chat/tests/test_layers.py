"""The domain imports no transport: it stores and returns, REST and Socket.IO publish."""

from __future__ import annotations

import ast
from pathlib import Path

import chat

CHAT_PACKAGE = Path(chat.__file__).parent
# What a domain module may not import: the transports, what they push with, and the web
# framework's request (the domain is called the same way by both transports).
TRANSPORT = (
    "chat.api",
    "chat.realtime",
    "chat.transport",
    "flask",
    "flask_socketio",
    "socketio",
    "engineio",
)


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (also inside functions), made absolute."""
    package = ".".join(path.relative_to(CHAT_PACKAGE.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_imported_modules_resolves_relative_imports():
    found = imported_modules(CHAT_PACKAGE / "realtime" / "delivery.py")
    assert {"chat.domain.messages.Posted", "chat.realtime.publish", "chat.metrics"} <= found


def test_the_domain_imports_no_transport():
    offending = {
        f"{path.name}: {module}"
        for path in sorted((CHAT_PACKAGE / "domain").glob("*.py"))
        for module in imported_modules(path)
        if any(module == t or module.startswith(t + ".") for t in TRANSPORT)
    }
    assert offending == set()


def test_liveness_imports_what_it_uses_at_module_level():
    """No import inside a function to dodge a cycle: there is none left to dodge."""
    tree = ast.parse((CHAT_PACKAGE / "cluster" / "liveness.py").read_text())
    nested = [
        node.lineno
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef)
        for node in ast.walk(fn)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    assert nested == []
