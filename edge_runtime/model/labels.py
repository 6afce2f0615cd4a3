"""Label files: one label a line (the line number is the class index), or Coral's numbered
``N label`` lines."""

from __future__ import annotations

import os
import re

from edge_runtime.errors import LabelError
from edge_runtime.system.limits import MAX_CLASSES, MAX_LABELS_BYTES, read_bounded

_NUMBERED = re.compile(r"^\s*(\d+)[\s:]+(.*\S)\s*$")


def parse_labels(text: str, classes: int | None = None, where: str = "labels") -> list[str]:
    """Return the labels of a label file's text, index = class id.

    Plain files give one label per line (blank lines keep their index, trailing ones are
    dropped). When every non-blank line is ``N label`` (Coral's format), N is the index;
    gaps become ``"N"``. An index at or beyond ``classes`` (the model's outputs, when known;
    else ``$EDGECLS_MAX_CLASSES``) raises LabelError naming ``where`` before anything is
    allocated for it.
    """
    most = MAX_CLASSES.get()
    limit = min(classes, most) if classes is not None else most
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return []
    if len(lines) > most:
        raise LabelError(f"{where}: {len(lines):,} lines, but edgecls takes at most {most:,} classes; "
                         + MAX_CLASSES.hint())
    numbered = [(n, _NUMBERED.match(line)) for n, line in enumerate(lines, 1) if line.strip()]
    if len(numbered) > 1 and all(m for _, m in numbered):
        index = {int(m.group(1)): (n, m.group(2)) for n, m in numbered}  # type: ignore[union-attr]
        if len(index) == len(numbered):
            top = max(index)
            if top >= limit:
                why = (f"the model outputs {classes:,} classes; use the label file that belongs to this model"
                       if classes is not None and top >= classes
                       else f"edgecls takes at most {most:,} classes; " + MAX_CLASSES.hint())
                raise LabelError(f"{where}: line {index[top][0]} gives class index {top:,}, but {why}")
            return [index[i][1] if i in index else str(i) for i in range(top + 1)]
    return [line.strip() for line in lines]


def read_labels(path: str | os.PathLike[str], classes: int | None = None) -> list[str]:
    """Read a label file (a regular file of at most ``$EDGECLS_MAX_LABELS_BYTES``; ``classes``:
    the model's outputs, when known). A missing, oversized, non-regular or undecodable file
    raises LabelError naming it."""
    data = read_bounded(path, "label file", LabelError, MAX_LABELS_BYTES.get(),
                        "a label file has one short label a line; " + MAX_LABELS_BYTES.hint())
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LabelError(f"{path}: not a UTF-8 text file; a label file has one label a line") from None
    labels = parse_labels(text, classes, str(path))
    if not labels:
        raise LabelError(f"{path}: label file is empty; it needs one label a line")
    return labels
