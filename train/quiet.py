"""What TensorFlow's C++ side logs, kept off the terminal of ``train``, ``convert`` and ``demo``.

TensorFlow, XLA, oneDNN and absl write log lines straight to file descriptor 2, in absl's
format (``E0000 00:00:1796177889.958724    7644 node_def_util.cc:682] NodeDef mentions
attribute use_unbounded_threadpool ...``), and they do so at any moment of a run, not only at
import time. ``TF_CPP_MIN_LOG_LEVEL`` does not reach all of them (absl's own logging ignores
it), so the command routes descriptor 2 through a pipe for the duration of the command:

- Python's own output (``sys.stderr``: progress, warnings, errors) goes to the real stderr
  directly, so a terminal is still a terminal (``isatty``) and nothing is delayed;
- a reader thread passes on what native code writes, line by line, except lines in absl's log
  format (severity letter, date, time, thread, ``file.cc:line]``) and the notes TensorFlow
  prints on every start (``WARNING: All log messages before absl::InitializeLog()``, the
  oneDNN and CPU-feature notes); ``F`` (fatal) lines always pass.

One cost: if TensorFlow aborts the process, a fatal line still in the pipe may be lost with it;
rerun with ``--verbose`` to see it.

``--verbose`` turns it off: everything native code writes reaches the terminal, and
``TF_CPP_MIN_LOG_LEVEL`` defaults to 0 instead of 2.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from typing import Iterator, TextIO

# absl/glog: "E0000 00:00:1796177889.958724    7644 node_def_util.cc:682] ..." (and I/W lines)
NATIVE_LOG = re.compile(r"^[IWE]\d{4} \d\d:\d\d:[\d.]+\s+\d+\s+\S+:\d+\] ")
NOTES = re.compile(r"^(WARNING: All log messages before absl::InitializeLog|To enable the following instructions|"
                   r"oneDNN custom operations are on|This TensorFlow binary is optimized)")


def is_native_log(line: str) -> bool:
    """Whether ``line`` is a log line of TensorFlow's C++ side (never a fatal one)."""
    return bool(NATIVE_LOG.match(line) or NOTES.match(line))


@contextlib.contextmanager
def native_logs_filtered(verbose: bool = False) -> Iterator[None]:
    """Within the block, C++ log lines written to descriptor 2 are dropped (unless ``verbose``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")
    if verbose:
        yield
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no descriptor 2 (a GUI, a closed stream)
        yield
        return
    read_end, write_end = os.pipe()
    stream = os.fdopen(real, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    reader = threading.Thread(target=_pass_on, args=(read_end, stream), name="native-stderr", daemon=True)
    saved_stderr = sys.stderr
    os.dup2(write_end, 2)
    os.close(write_end)
    sys.stderr = stream
    reader.start()
    try:
        yield
    finally:
        sys.stderr = saved_stderr
        stream.flush()
        os.dup2(real, 2)  # closes the pipe's last write end: the reader sees the end and stops
        reader.join(timeout=5)
        # ``stream`` stays open (one descriptor): a logging handler made inside the block may
        # still hold it, and writes through it still reach the real stderr.


def _pass_on(read_end: int, out: TextIO) -> None:
    with os.fdopen(read_end, "r", encoding="utf-8", errors="replace") as pipe:
        for line in pipe:
            if not is_native_log(line):
                out.write(line)
                out.flush()
