"""pyflakes over every tracked Python file: no undefined name, unused import or other error it finds (an undefined
name in scripts/text_floor.py once broke `bash scripts/text.sh` before any test ran it), and a planted one is named."""
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def pyflakes(paths: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyflakes", *map(str, paths)], capture_output=True, text=True,
                          timeout=120)


def tracked_python() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / n for n in names.split()]


def test_the_tree_has_no_pyflakes_message():
    files = tracked_python()
    assert len(files) > 100, f"only {len(files)} tracked Python files: not a git checkout of the project?"
    done = pyflakes(files)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout[-3000:] + done.stderr[-2000:]


def test_a_planted_undefined_name_is_named(tmp_path: Path):
    bad = tmp_path / "bad.py"
    bad.write_text("def main():\n    return setup_torch(1)\n")
    done = pyflakes([bad])
    assert done.returncode != 0 and "undefined name 'setup_torch'" in done.stdout
