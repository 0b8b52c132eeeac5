"""The architecture's rules, enforced: the import contracts (`lint-imports`, configured in pyproject.toml) and what
they cannot say — the Locust side loads no aiohttp, nothing imports the scenarios, no private name crosses a module,
and modules and functions stay small. Each rule is also shown to catch a breach."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("harness", "reference_server", "schemas", "kerneltime")
# What the scenarios may take from the harness: records, request building, prompts, the client's meters, and the
# preflight (urllib): nothing that loads aiohttp into a gevent process.
LOCUST_SIDE = (
    "harness.records",
    "harness.client.request",
    "harness.load.prompts",
    "harness.load.conversation",
    "harness.load.meters",
    "harness.target.preflight",
)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
ARGPARSE_TABLES = {"add_arguments", "build_parser"}  # option tables, excepted by the rule


def lint_imports(cwd: Path, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"PYTHONPATH": str(pythonpath)} if pythonpath is not None else {})}
    lint = Path(sys.executable).parent / "lint-imports"
    return subprocess.run([str(lint), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_are_kept() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "wrong", "contract"),
    [
        ("harness/records/record.py", "from harness.report import tables", "pipeline"),
        ("harness/analysis/stats.py", "import harness.client.session", "pipeline"),
        ("harness/client/request.py", "import aiohttp", "loads no aiohttp"),
        ("reference_server/engines/base.py", "from reference_server import protocol", "HTTP layer"),
        ("harness/load/plan.py", "import reference_server.limiter", "never import each other"),
    ],
)
def test_a_wrong_import_is_caught(tmp_path: Path, module: str, wrong: str, contract: str) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / module).open("a", encoding="utf-8") as f:
        f.write(f"\n{wrong}  # the breach under test\n")
    done = lint_imports(tmp_path, pythonpath=tmp_path)
    assert done.returncode == 1, done.stdout[-3000:]
    broken = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    assert len(broken) == 1 and contract in broken[0], done.stdout[-3000:]


def python_files(*folders: str) -> Iterator[Path]:
    for folder in folders:
        yield from sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def imported(path: Path) -> Iterator[tuple[str, list[str]]]:
    """Every module `path` imports (anywhere in it), with the names it takes from it."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [alias.name for alias in node.names]
            submodules = [
                n for n in names if (ROOT / f"{node.module}.{n}".replace(".", "/")).with_suffix(".py").exists()
            ]
            yield from ((f"{node.module}.{n}", []) for n in submodules)
            if len(submodules) < len(names):
                yield node.module, [n for n in names if n not in submodules]


def test_the_scenarios_take_only_the_locust_side_of_the_harness() -> None:
    taken = {
        (path.name, module)
        for path in python_files("scenarios")
        for module, _ in imported(path)
        if module.startswith("harness") and not module.startswith(LOCUST_SIDE)
    }
    assert taken == set()


def test_the_scenarios_load_no_aiohttp() -> None:
    """Every scenario module imported as Locust imports them (Locust first, which monkey-patches the process)."""
    names = sorted(p.stem for p in (ROOT / "scenarios").glob("*.py"))
    code = "import sys, locust\n" + "".join(f"import {n}\n" for n in names)
    code += "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'uvloop')))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "scenarios", capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_nothing_imports_the_scenarios() -> None:
    scenario_modules = {p.stem for p in (ROOT / "scenarios").glob("*.py")}
    importers = [
        (path.relative_to(ROOT), module)
        for path in python_files("harness", "reference_server", "schemas", "kerneltime", "benchmarks", "tests")
        for module, _ in imported(path)
        if module.split(".")[0] in scenario_modules | {"scenarios"}
    ]
    assert importers == []


def private_imports(paths: Iterator[Path]) -> list[str]:
    project = ("harness", "reference_server", "schemas", "kerneltime", "benchmarks", "tests", "_llm_")
    return [
        f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}: {module}.{name}"
        for path in paths
        for module, names in imported(path)
        if module.startswith(project)
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]


def test_no_private_name_is_imported_across_modules(tmp_path: Path) -> None:
    assert private_imports(python_files(*PACKAGES, "scenarios", "benchmarks", "tests")) == []
    breach = tmp_path / "breach.py"
    breach.write_text("from harness.client.protocol import _SOMETHING\n")
    assert private_imports(iter([breach])) == ["breach.py: harness.client.protocol._SOMETHING"]


def oversized(paths: Iterator[Path]) -> list[str]:
    found = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        if (lines := len(text.splitlines())) > MAX_MODULE_LINES:
            found.append(f"{path.name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name not in ARGPARSE_TABLES:
                assert node.end_lineno is not None
                if (length := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES:
                    found.append(f"{path.name}: {node.name} {length} lines")
    return found


def test_modules_and_functions_stay_small(tmp_path: Path) -> None:
    assert oversized(python_files("harness", "reference_server")) == []
    big = tmp_path / "big.py"
    big.write_text("def long() -> None:\n" + "    pass\n" * MAX_FUNCTION_LINES)
    assert oversized(iter([big])) == [f"big.py: long {MAX_FUNCTION_LINES + 1} lines"]
