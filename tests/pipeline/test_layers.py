"""The import contracts of pyproject.toml ([tool.importlinter]): the tree keeps them, and a planted upward import
breaks them (lint-imports exits non-zero and names it)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGES = ("common", "data", "models", "samplers", "jys", "metrics", "train", "pipeline", "results")


def lint(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the packages under `root` (found there first: PYTHONPATH), without its cache."""
    exe = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(exe), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_the_import_contracts():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def copy_tree(tmp_path: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def lint_with_planted_line(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess:
    """lint-imports on a copy of the packages where `line` is appended to `module` (a path under the root)."""
    root = copy_tree(tmp_path)
    target = root / module
    target.write_text(target.read_text() + "\n" + line + "\n")
    return lint(root)


def test_an_upward_import_breaks_the_layers(tmp_path):
    done = lint_with_planted_line(tmp_path, "models/kernels.py", "from samplers import steps  # planted")
    assert done.returncode != 0 and "BROKEN" in done.stdout
    assert "models.kernels -> samplers.steps" in done.stdout


def test_a_config_read_below_the_root_breaks_the_contract(tmp_path):
    done = lint_with_planted_line(tmp_path, "samplers/loop.py", "from omegaconf import DictConfig  # planted")
    assert done.returncode != 0 and "samplers.loop -> omegaconf" in done.stdout
