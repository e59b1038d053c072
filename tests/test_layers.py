"""Imports point down the layers: the import-linter contract in pyproject.toml holds, with no exceptions."""

import subprocess
import sys
import tomllib
from pathlib import Path

from .conftest import REPO


def test_imports_point_down_the_layers():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 kept, 0 broken" in done.stdout


def test_the_contract_lists_no_exceptions():
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert contracts and all("ignore_imports" not in contract for contract in contracts)
