"""The codebase keeps the rules it states: the layers the README draws (import-linter's contract in
pyproject.toml) and the lint rules (ruff), checked by the tools themselves."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_layers_the_readme_draws_are_kept(tmp_path):
    # import-linter reads pyproject.toml; its cache goes to the test's folder, not the checkout
    command = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
               f"sys.exit(lint_imports(cache_dir={str(tmp_path)!r}, no_logo=True))"]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "1 kept, 0 broken" in run.stdout


def test_ruff_finds_nothing():
    env = {**os.environ, "RUFF_NO_CACHE": "true"}  # nothing written into the checkout
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "embeddings_squeeze", "tests", "benchmarks"],
                         cwd=ROOT, capture_output=True, text=True, env=env)  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
