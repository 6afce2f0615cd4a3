"""``--exec CMD``: run a command on a label change, without a shell.

CMD is split like a shell would (``shlex.split``) and run directly; it gets ``EDGECLS_LABEL`` (empty
when no label leads), ``EDGECLS_SCORE``, ``EDGECLS_FRAME``, ``EDGECLS_PREVIOUS_LABEL`` and
``EDGECLS_ZONE`` (empty without zones) in its environment, its output goes to edgecls's stderr (so ``--json`` on stdout stays clean). One runs
at a time; a command still running after ``--exec-timeout`` seconds is killed. A failure (not
found, non-zero exit, timeout) is logged and counted, never fatal. Four changes wait at most."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time

from edge_runtime.actions.base import Log, Sink, State, stderr_log


class ExecSink(Sink):
    name = "exec"

    def __init__(self, cmd: str, *, timeout: float = 10.0, log: Log = stderr_log):
        super().__init__(log, maxlen=4)
        try:
            self.argv = shlex.split(cmd)
        except ValueError as e:
            raise ValueError(f"--exec {cmd!r}: {e}; quote it like a shell command") from None
        if not self.argv:
            raise ValueError("--exec needs a command")
        if shutil.which(self.argv[0]) is None:
            raise ValueError(f"--exec {cmd!r}: {self.argv[0]!r} is not an executable file nor on PATH")
        if timeout <= 0:
            raise ValueError("--exec-timeout must be more than 0 seconds")
        self.cmd, self.timeout = cmd, timeout
        self.proc: subprocess.Popen[bytes] | None = None

    def close(self) -> None:
        p = self.proc  # still running after the stop deadline: it would outlive edgecls
        if p is not None and p.poll() is None:
            p.kill()
            p.wait()
            self.log(f"exec: {self.cmd!r} was still running when edgecls stopped; killed")

    def handle(self, state: State) -> None:
        score = state.score
        env = {**os.environ, "EDGECLS_LABEL": state.label or "", "EDGECLS_SCORE": "" if score is None else f"{score:.6f}",
               "EDGECLS_FRAME": str(state.frame), "EDGECLS_PREVIOUS_LABEL": state.previous or "",
               "EDGECLS_ZONE": state.zone or ""}
        try:
            out = sys.stderr.fileno()
        except (AttributeError, OSError, ValueError):
            out = subprocess.DEVNULL
        try:
            self.proc = p = subprocess.Popen(self.argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        except OSError as e:
            self.failed += 1
            self.log(f"exec: cannot run {self.cmd!r}: {e.strerror or e}")
            return
        end = time.monotonic() + self.timeout
        while p.poll() is None:
            if time.monotonic() >= end:
                p.kill()
                p.wait()
                self.failed += 1
                self.log(f"exec: {self.cmd!r} still ran after {self.timeout:g} s; killed")
                return
            time.sleep(0.02)
        if p.returncode == 0:
            self.sent += 1
        else:
            self.failed += 1
            self.log(f"exec: {self.cmd!r} exited with status {p.returncode} (label {state.label!r})")
