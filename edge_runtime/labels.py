"""Label files: one label a line (the line number is the class index), or Coral's numbered
``N label`` lines."""

from __future__ import annotations

import os
import re

from .errors import LabelError

_NUMBERED = re.compile(r"^\s*(\d+)[\s:]+(.*\S)\s*$")


def parse_labels(text: str) -> list[str]:
    """Return the labels of a label file's text, index = class id.

    Plain files give one label per line (blank lines keep their index, trailing ones are
    dropped). When every non-blank line is ``N label`` (Coral's format), N is the index;
    gaps become ``"N"``.
    """
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return []
    matches = [_NUMBERED.match(line) for line in lines if line.strip()]
    if all(matches) and len(matches) > 1:
        numbered = {int(m.group(1)): m.group(2) for m in matches}
        if len(numbered) == len(matches):
            size = max(numbered) + 1
            return [numbered.get(i, str(i)) for i in range(size)]
    return [line.strip() for line in lines]


def read_labels(path: str | os.PathLike[str]) -> list[str]:
    """Read a label file; a missing or undecodable file raises LabelError naming it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise LabelError(f"{path}: label file not found; pass --labels with a file of one label a line") from None
    except OSError as e:
        raise LabelError(f"{path}: cannot read label file ({e.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LabelError(f"{path}: not a UTF-8 text file; a label file has one label a line") from None
    labels = parse_labels(text)
    if not labels:
        raise LabelError(f"{path}: label file is empty; it needs one label a line")
    return labels
