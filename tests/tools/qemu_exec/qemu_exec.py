"""What binfmt_misc does on a machine that runs foreign binaries, for the emulated Pi: a program
of the emulated userland (an aarch64 or arm ELF, or a script whose #! line names one, like a venv's
bin/pip) is started through qemu-user. The tests run the README's Pi commands with it, and
``sitecustomize`` applies it to the subprocesses the emulated Python starts itself (`python3 -m
venv` runs ensurepip in a child), where qemu-user alone would fail with "Exec format error"."""

from __future__ import annotations

import os
import shutil

MACHINES = {183, 40}  # ELF e_machine: aarch64, arm (the userland's; qemu's -L names which)


def qemu_prefix() -> list[str]:
    """``EDGECLS_QEMU_EXEC``: the qemu-user command line, one argument a line (empty: do nothing)."""
    return [a for a in os.environ.get("EDGECLS_QEMU_EXEC", "").split("\n") if a]


def guest_argv(argv: list[str], qemu: list[str], path: str | None = None, depth: int = 0) -> list[str]:
    """ARGV rewritten to start through QEMU when its program is an ARM ELF or a script of one."""
    if not qemu or not argv or depth > 3:
        return argv
    program = argv[0] if os.sep in argv[0] else shutil.which(argv[0], path=path)
    if not program or not os.path.isfile(program):
        return argv
    with open(program, "rb") as f:
        head = f.read(256)
    if head.startswith(b"#!"):
        words = head[2:].split(b"\n", 1)[0].decode().split(maxsplit=1)
        if words:
            return guest_argv([*words, program, *argv[1:]], qemu, path, depth + 1)
        return argv
    if head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") in MACHINES:
        return [*qemu, program, *argv[1:]]
    return argv
