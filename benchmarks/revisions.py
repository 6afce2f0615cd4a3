"""An older revision of this repository as a folder, for benchmarks that time it against the
working tree (demo_time.py and folder_throughput.py ``--before REV``)."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("train", "convert", "edge_runtime", "deploy")
SCHEMA = Path("edge_runtime/model/metadata_schema_generated.py")  # made by the editable install, not in git


def tree_at(rev: str, dest: Path) -> Path:
    """The repository's files at ``rev`` (git archive) in ``dest``/tree, with this checkout's
    generated metadata schema. Run it with ``PYTHONPATH`` = the tree: its packages come before the
    editable install's, which would quietly supply any package the revision lacks, so a revision
    without all four is refused."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    (dest / "tree.tar").write_bytes(data)
    with tarfile.open(dest / "tree.tar") as t:
        t.extractall(dest / "tree", filter="data")
    tree = dest / "tree"
    missing = [pkg for pkg in PACKAGES if not (tree / pkg).is_dir()]
    if missing:
        raise SystemExit(f"{rev} has no {', '.join(missing)}/: pass a revision of this layout")
    if (ROOT / SCHEMA).exists() and (tree / SCHEMA).parent.is_dir():
        shutil.copy2(ROOT / SCHEMA, tree / SCHEMA)
    return tree
