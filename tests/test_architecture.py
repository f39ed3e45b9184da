"""The app boundaries of pyproject.toml [tool.importlinter]: the tree keeps every contract, and
each kind of forbidden import does fail `lint-imports` (checked on a copy of the packages)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = (
    "config",
    "accounts",
    "credits",
    "generations",
    "infra_costs",
    "operations",
    "planning",
    "devtools",
)


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_tree_keeps_every_contract():
    result = lint_imports(BASE_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    """The project's packages (Python files only) and pyproject.toml, in a temporary folder."""
    root = tmp_path_factory.mktemp("tree")
    shutil.copy(BASE_DIR / "pyproject.toml", root)
    for package in PACKAGES:
        if (BASE_DIR / package).is_dir():
            shutil.copytree(
                BASE_DIR / package,
                root / package,
                ignore=lambda folder, names: (
                    [n for n in names if not n.endswith(".py") and not (Path(folder) / n).is_dir()]
                    + ["__pycache__"]
                ),
            )
    return root


@pytest.mark.parametrize(
    "module, line, contract",
    [
        ("config/urls.py", "import accounts.models", "config is plumbing: it imports no app"),
        ("accounts/models.py", "import credits.models", "App layers"),
        ("infra_costs/models.py", "import generations.models", "App layers"),
        ("credits/models.py", "import infra_costs.models", "App layers"),
        (
            "credits/views.py",
            "from accounts import views",
            "No app imports another app's views (accounts)",
        ),
        (
            "generations/views/job.py",
            "import infra_costs.views",
            "No app imports another app's views (infra_costs)",
        ),
        ("accounts/selectors.py", "from accounts import services", "Selectors never call services"),
        ("generations/tasks.py", "from credits import ledger", "credits.ledger is private"),
    ],
)
def test_a_forbidden_import_fails_lint_imports(tree_copy, module, line, contract):
    path = tree_copy / module
    original = path.read_text()
    path.write_text(original + f"\n{line}  # the forbidden import under test\n")
    try:
        result = lint_imports(tree_copy)
    finally:
        path.write_text(original)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    broken = output.split("Broken contracts")[-1]
    assert contract in broken, output
