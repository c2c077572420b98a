"""The import rule between the simulators and the code they test, checked by walking every import.

1. Nothing under ``storeflow/sandbox/`` imports ``storeflow.hallmark``, ``storeflow.crm`` or
   ``storeflow.esl``: a simulator shares no code with the client it tests (a wrong HMAC or a wrong
   field name must fail against it, not agree with itself).
2. Production code paths never depend on a simulator. Only these modules outside ``storeflow/sandbox/``
   may import ``storeflow.sandbox``:
   - ``storeflow/demo.py`` and the pipelines' demo steps (``storeflow/<pipeline>/demo.py``): the demo
     runs every pipeline against the simulators;
   - ``storeflow/cli.py``, which only mounts the ``storeflow sandbox`` sub-command.
   The tests and the benchmarks (outside ``src/``) may import it too.

Every import counts, including those inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "storeflow"
SIMULATOR_CLIENTS = ("storeflow.hallmark", "storeflow.crm", "storeflow.esl")
MAY_IMPORT_SANDBOX = {"storeflow/demo.py", "storeflow/cli.py"} | {
    f"storeflow/{pipeline}/demo.py" for pipeline in ("hallmark", "crm", "esl")
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, package: str) -> set[str]:
    """Every module ``source`` (a module of ``package``) imports; ``from a import b`` gives a and a.b."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def imports_of(path: Path) -> set[str]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return imported_modules(path.read_text(encoding="utf-8"), package)


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _sources() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE.parent).as_posix()


@pytest.mark.parametrize(
    ("source", "imports", "names_a_client"),
    [
        ("import storeflow.esl.api", {"storeflow.esl.api"}, True),
        ("from ..esl import api", {"storeflow.esl", "storeflow.esl.api"}, True),
        ("from .. import crm", {"storeflow", "storeflow.crm"}, True),
        ("from . import base", {"storeflow.sandbox", "storeflow.sandbox.base"}, False),
        ("from .tumbledry.common import rows", {"storeflow.sandbox.tumbledry.common",
                                                 "storeflow.sandbox.tumbledry.common.rows"}, False),
        ("from storeflow.eslx import y", {"storeflow.eslx", "storeflow.eslx.y"}, False),
        ("def f():\n    from storeflow.hallmark import aura", {"storeflow.hallmark", "storeflow.hallmark.aura"}, True),
    ],
)  # fmt: skip
def test_the_walker_resolves_imports(source: str, imports: set[str], names_a_client: bool) -> None:
    found = imported_modules(source, "storeflow.sandbox")
    assert found == imports
    assert any(_within(name, c) for name in found for c in SIMULATOR_CLIENTS) is names_a_client


def test_simulators_import_no_pipeline_code() -> None:
    offenders = [
        f"{_rel(path)} imports {name}"
        for path in _sources()
        if _within(_module_name(path), "storeflow.sandbox")
        for name in sorted(imports_of(path))
        if any(_within(name, client) for client in SIMULATOR_CLIENTS)
    ]
    assert offenders == []


def test_only_the_demo_and_the_sandbox_command_import_the_simulators() -> None:
    offenders = [
        f"{_rel(path)} imports {name}"
        for path in _sources()
        if not _within(_module_name(path), "storeflow.sandbox") and _rel(path) not in MAY_IMPORT_SANDBOX
        for name in sorted(imports_of(path))
        if _within(name, "storeflow.sandbox")
    ]
    assert offenders == []


def test_the_allowed_importers_exist() -> None:
    # a renamed demo module must not leave a stale exemption behind
    assert all((PACKAGE.parent / rel).is_file() for rel in MAY_IMPORT_SANDBOX)
