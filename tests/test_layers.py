"""The layers of DESIGN.md hold: edge_runtime's rooms import downwards only, the runtime never
imports TensorFlow or the workstation, and no module imports itself through a cycle (imports
inside functions count). The contracts live in pyproject.toml; ``lint-imports`` checks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_runtime", "train", "convert", "deploy")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(exe), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_contracts_are_kept():
    p = lint_imports(ROOT)
    assert p.returncode == 0, p.stdout[-3000:]
    assert "4 kept, 0 broken" in p.stdout


@pytest.mark.parametrize("module, line", [
    ("edge_runtime/model/labels.py", "from edge_runtime.live import sources  # noqa: F401\n"),  # up a layer
    ("edge_runtime/system/signals.py", "def f():\n    import edge_runtime.cli.main  # noqa: F401\n"),  # deferred
    ("edge_runtime/model/preprocess.py", "def f():\n    import tensorflow  # noqa: F401\n"),
    ("edge_runtime/bundle/verify.py", "from convert import gate  # noqa: F401\n"),
])
def test_an_upward_import_breaks_the_build(tmp_path, module, line):
    copy = tmp_path / "repo"
    for name in (*PACKAGES, "pyproject.toml"):
        src = ROOT / name
        (shutil.copytree(src, copy / name, ignore=shutil.ignore_patterns("__pycache__")) if src.is_dir()
         else shutil.copy(src, copy / name))
    with open(copy / module, "a") as f:
        f.write("\n\n" + line)
    p = lint_imports(copy)
    assert p.returncode != 0 and "BROKEN" in p.stdout, p.stdout[-2000:]


def test_no_import_cycles():
    g = grimp.build_graph(*PACKAGES)
    ours = {m for m in g.modules if m.split(".")[0] in PACKAGES}
    cycles = []
    for a in sorted(ours):
        for b in g.find_modules_directly_imported_by(a) & ours:
            chain = g.find_shortest_chain(importer=b, imported=a) if b != a else None
            if chain:
                cycles.append(" -> ".join((a, *chain)))
    assert cycles == []
