"""argparse types shared by every ``edgecls`` subcommand (the workstation ones too), so that a
count, a rate or a score is checked the same way everywhere and the error names the option."""

from __future__ import annotations

import argparse

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
