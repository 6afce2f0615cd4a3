"""Arguments shared by every ``edgecls`` subcommand (the workstation ones too): argparse types, so
that a count, a rate or a score is checked the same way everywhere and the error names the option,
and ``serve_address``, the one ``--serve``/``--public`` check of the web pages."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from edge_runtime.bundle.classifier import BACKENDS
from edge_runtime.web import server as webview

MAX_THREADS = 256  # far above any Pi or desktop; a larger number is a typo (and crashes XNNPACK)


def _number(text: str, kind: type) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None


def positive_int(text: str) -> int:
    """An integer of at least 1: counts, sizes, batch sizes."""
    n = int(_number(text, int))
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def nonneg_int(text: str) -> int:
    """An integer of at least 0: warm-up runs, epochs that may be skipped."""
    n = int(_number(text, int))
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {n}")
    return n


def threads(text: str) -> int:
    """A CPU thread count, 1 to MAX_THREADS."""
    n = int(_number(text, int))
    if not 1 <= n <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_THREADS}, got {n}")
    return n


def positive_float(text: str) -> float:
    """A finite number above 0: rates, durations."""
    x = _number(text, float)
    if not 0 < x < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text}")
    return x


def nonneg_float(text: str) -> float:
    x = _number(text, float)
    if not 0 <= x < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of 0 or more, got {text}")
    return x


def score(text: str) -> float:
    """A score threshold, 0 to 1."""
    x = _number(text, float)
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, got {text}")
    return x


def thread_list(text: str) -> list[int]:
    """Thread counts like ``1,2,4``."""
    parts = [x for x in text.split(",") if x.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"{text!r}: give thread counts like 1,2,4")
    return [threads(x.strip()) for x in parts]


def serve_address(text: str, public: bool, what: str) -> tuple[str, int]:
    """``--serve``'s host and port; an address other machines can reach needs ``--public``."""
    host, port = webview.parse_address(text)
    if not webview.is_loopback(host):
        if not public:
            raise ValueError(f"--serve {text} would be reachable from other machines; add --public to say so "
                             "(or serve on 127.0.0.1 and use an SSH tunnel)")
        print(f"edgecls: warning: the {what} page on {host}:{port} is reachable by anyone on the network, "
              "without a password", file=sys.stderr)
    return host, port


def model_args(p: argparse.ArgumentParser, backends: Sequence[str] = BACKENDS) -> None:
    p.add_argument("model", metavar="MODEL_OR_BUNDLE", help="bundle directory or .tar.gz, or a bare .tflite")
    p.add_argument("--labels", metavar="FILE", help="label file for a bare .tflite (one label a line, or 'N label')")
    runtime_args(p, backends)


def runtime_args(p: argparse.ArgumentParser, backends: Sequence[str] = BACKENDS) -> None:
    """--backend, --threads, --interpreter: how a model runs here."""
    p.add_argument("--backend", choices=backends, default="auto",
                   help="auto takes the first that starts of edgetpu, gpu, cpu (default: auto)")
    p.add_argument("--threads", type=threads, default=None, help="CPU threads (default: the machine's cores)")
    p.add_argument("--interpreter", metavar="PKG", default=None,
                   help="force ai_edge_litert, tflite_runtime or tensorflow (also $EDGECLS_INTERPRETER)")
