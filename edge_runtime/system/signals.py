"""SIGTERM and SIGHUP end an ``edgecls`` command the way Ctrl-C does: an exception in the main
thread, so every ``finally`` runs and temporary directories (an unpacked bundle archive) are
removed. Python's default for both signals is to die on the spot, leaving them behind."""

from __future__ import annotations

import signal
import threading
from typing import Any


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal (``signum``)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def stop_like_ctrl_c() -> None:
    """Install the handlers (main thread only; elsewhere, and for signals set to be ignored, a
    no-op: ``nohup`` keeps its meaning)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None and signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _raise)
