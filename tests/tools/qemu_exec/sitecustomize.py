"""Loaded by the emulated Pi's Python when this folder is on PYTHONPATH (tests only): starts
aarch64 children through qemu-user, as binfmt_misc would (see qemu_exec.py)."""

import os
import subprocess

from qemu_exec import guest_argv, qemu_prefix

_QEMU = qemu_prefix()
_HERE = os.path.dirname(os.path.abspath(__file__))
_execute_child = subprocess.Popen._execute_child


def _through_qemu(self, args, executable, *rest):
    if _QEMU and isinstance(args, (list, tuple)) and args:
        argv = [str(executable or args[0]), *map(str, args[1:])]
        # The shim travels on in children, also those started with PYTHONPATH removed (venv does).
        env = rest[4] if len(rest) > 4 and rest[4] is not None else os.environ
        pythonpath = os.pathsep.join(p for p in (_HERE, env.get("PYTHONPATH", "")) if p)
        rewritten = guest_argv(argv, [*_QEMU, "-E", f"PYTHONPATH={pythonpath}"])
        if rewritten[0] != argv[0]:
            args, executable = rewritten, None
    return _execute_child(self, args, executable, *rest)


subprocess.Popen._execute_child = _through_qemu


def _root() -> str:
    return _QEMU[_QEMU.index("-L") + 1] if "-L" in _QEMU else ""


def _translated(call):
    """qemu-user maps the guest's absolute paths into -L ROOT for most calls but not for the
    xattr ones: Debian's ensurepip copies /usr/share/python-wheels with shutil.copy2."""
    root = _root()

    def wrapper(path, *args, **kwargs):
        name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
        if root and isinstance(name, str) and name.startswith("/") and os.path.lexists(root + name):
            path = root + name
        return call(path, *args, **kwargs)

    return wrapper


if _QEMU:
    os.listxattr = _translated(os.listxattr)
    os.getxattr = _translated(os.getxattr)
