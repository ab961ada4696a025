"""The two dependency locks: the image's runtime lock carries no test tools, and no service code
imports a package that only the development lock installs."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What the image runs (the Dockerfile copies these folders); tests/ and bench/ may use dev packages.
RUNTIME_FOLDERS = ("api", "dags", "fulfillment", "include", "model_server", "ops", "plugins")
PROJECT_MODULES = {"api", "dags", "fulfillment", "include", "model_server", "ops", "plugins", "bitbuddies_airflow", "bitbuddies_plugin", "tests"}
TEST_TOOLS = {"pytest", "pytest-timeout", "scikit-image", "moto", "playwright", "axe-playwright-python", "zxing-cpp", "cfn-lint"}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(lock: str) -> set[str]:
    text = (ROOT / lock).read_text()
    return {normalise(m.group(1)) for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==", text, re.M)}


def imported_top_level_modules(folder: Path) -> dict[str, str]:
    """{top-level module: first file importing it}, imports inside functions included."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_lock_pins_with_hashes():
    for lock in ("requirements.txt", "requirements-dev.txt", "requirements-nodeps.txt"):
        text = (ROOT / lock).read_text()
        entries = re.findall(r"^[A-Za-z0-9][^\n]*==[^\n]*", text, re.M)
        assert entries, lock
        assert all(entry.rstrip().endswith("\\") for entry in entries), f"{lock}: a pin without --hash lines"


def test_the_runtime_lock_has_no_test_packages():
    runtime = pinned("requirements.txt")
    assert not runtime & TEST_TOOLS, f"test tools in the image's lock: {sorted(runtime & TEST_TOOLS)}"
    assert TEST_TOOLS - {"cfn-lint"} <= pinned("requirements-dev.txt")


def test_service_code_imports_only_runtime_packages():
    runtime = pinned("requirements.txt") | pinned("requirements-nodeps.txt")
    distributions = packages_distributions()
    problems = []
    for folder in RUNTIME_FOLDERS:
        for module, where in imported_top_level_modules(ROOT / folder).items():
            if module in sys.stdlib_module_names or module in PROJECT_MODULES or module == "__future__":
                continue
            dists = {normalise(d) for d in distributions.get(module, [])}
            if not dists:
                problems.append(f"{where}: imports {module}, which no installed distribution provides")
            elif not dists & runtime:
                problems.append(f"{where}: imports {module} from {sorted(dists)}, not in the runtime lock")
    assert not problems, "\n".join(problems)
