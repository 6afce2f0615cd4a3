"""The one validator of ``edgecls.json``: every section a reader relies on, with types and ranges,
each error naming the file and the key (``files['golden/x.png'].size``) and saying what to do.

The schema (format version 1):

``format_version`` 1; ``name``, ``created`` (optional strings); ``files``: an object of bundle
file names (relative paths, no ``..``, no backslash) to ``{"sha256": 64 hex digits, "size": bytes}``,
listing ``model.tflite`` and ``labels.txt``; ``input`` and ``output``: the contracts
(``contract.InputContract`` / ``OutputContract``, validated there); ``golden`` (optional):
``{"photos": [{"file": a listed file, "label": str, "input_sha256": hex (optional), "raw": one
number per class, "top_k": [[class index, score], ...]}, ...]}`` with at most
``golden.MAX_PHOTOS`` photos; ``reference`` (optional): the drift reference (``bundle/reference.py``,
validated there). Other sections (``source``, ``metrics``, ``edgetpu``) are free-form
JSON, nested at most ``MAX_DEPTH`` deep.

The text itself is read with a size bound (``$EDGECLS_MAX_META_BYTES``) and parsed without
recursion errors: a 100,000-deep array is one line, not a traceback.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Mapping

from edge_runtime.bundle.reference import Reference
from edge_runtime.errors import BundleError
from edge_runtime.model.contract import ContractError, InputContract, OutputContract
from edge_runtime.system.limits import MAX_BUNDLE_BYTES, MAX_BUNDLE_MEMBERS

FORMAT_VERSION = 1
METADATA = "edgecls.json"
REQUIRED = ("model.tflite", "labels.txt")
MAX_DEPTH = 32  # edgecls writes 4 levels; a deeper file is corrupt or hostile
MAX_NAME = 255
MAX_PHOTOS = 10  # golden.MAX_PHOTOS (golden imports preprocess; kept apart to avoid the cycle)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
FIX = "fix the file or reconvert the model"


@dataclass(frozen=True)
class FileEntry:
    """One file listed in ``edgecls.json``."""

    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Metadata:
    """A validated ``edgecls.json``: the raw dict (for free-form sections) and the typed parts."""

    raw: dict[str, Any]
    files: dict[str, FileEntry]
    input: InputContract
    output: OutputContract


def parse_meta(data: bytes, where: str) -> Metadata:
    """Decode, parse and validate the bytes of an ``edgecls.json``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start}); copy the bundle again") from None
    if _depth_exceeds(text, MAX_DEPTH):
        raise BundleError(f"{where}: JSON nested more than {MAX_DEPTH} levels deep; edgecls writes 4 - {FIX}")
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as e:  # ValueError: huge integer literals
        raise BundleError(f"{where}: unreadable bundle metadata ({str(e)[:120]}); copy the bundle again") from None
    return check_meta(meta, where)


def _depth_exceeds(text: str, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than ``limit`` (before json.loads recurses)."""
    if text.count("[") + text.count("{") <= limit:
        return False
    depth, in_str, esc = 0, False, False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def _fail(where: str, key: str, want: str, got: Any) -> BundleError:
    shown = "nothing" if got is _MISSING else repr(got)[:60]
    return BundleError(f"{where}: {key} must be {want}, got {shown}; {FIX}")


_MISSING = object()


def _int(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_name(name: Any, where: str, key: str) -> str:
    """A bundle file name: a relative POSIX path inside the bundle."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise _fail(where, key, f"a file name of 1 to {MAX_NAME} characters", name)
    p = PurePosixPath(name)
    if (p.is_absolute() or "\\" in name or "\x00" in name or ".." in p.parts or str(p) != name
            or any(part in ("", ".") for part in name.split("/"))):
        raise BundleError(f"{where}: {key} {name!r} points outside the bundle or is not a plain relative path; {FIX}")
    if name == METADATA:
        raise BundleError(f"{where}: {key} lists {METADATA} itself; {FIX}")
    return name


def check_meta(meta: Any, where: str) -> Metadata:
    """Validate a parsed ``edgecls.json``; raises BundleError naming the first bad key."""
    if not isinstance(meta, dict):
        raise BundleError(f"{where}: bundle metadata is not a JSON object; copy the bundle again")
    version = meta.get("format_version")
    if not _int(version, FORMAT_VERSION, FORMAT_VERSION):
        raise BundleError(f"{where}: bundle format version {version!r} is not known to this edgecls "
                          f"(it reads version {FORMAT_VERSION}); install the edgecls version that wrote it, or reconvert")
    for key in ("name", "created"):
        if key in meta and not (isinstance(meta[key], str) and len(meta[key]) <= 1000):
            raise _fail(where, key, "a string", meta[key])
    for key in ("files", "input", "output"):
        if not isinstance(meta.get(key), dict):
            if key not in meta:
                raise BundleError(f"{where}: bundle metadata has no '{key}' section; reconvert the model")
            raise _fail(where, key, "a JSON object", meta[key])
    files = _files(meta["files"], where)
    try:
        contract_in = InputContract.from_json(meta["input"], where)
        contract_out = OutputContract.from_json(meta["output"], where)
    except ContractError:
        raise
    except ValueError as e:  # a value the dataclass refuses after the reader's checks
        raise BundleError(f"{where}: {e}; {FIX}") from None
    if "golden" in meta:
        _golden(meta["golden"], where, files, contract_out.classes)
    if "reference" in meta:
        Reference.from_json(meta["reference"], where, contract_out.classes)
    return Metadata(meta, files, contract_in, contract_out)


def _files(section: Mapping[str, Any], where: str) -> dict[str, FileEntry]:
    most = MAX_BUNDLE_MEMBERS.get()
    if len(section) > most:
        raise BundleError(f"{where}: files lists {len(section):,} files, more than {most:,}; "
                          + MAX_BUNDLE_MEMBERS.hint())
    out = {}
    for name, entry in section.items():
        key = f"files[{name!r}]"
        check_name(name, where, f"files key {name!r}")
        if not isinstance(entry, dict):
            raise _fail(where, key, 'an object {"sha256": ..., "size": ...}', entry)
        digest, size = entry.get("sha256", _MISSING), entry.get("size", _MISSING)
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise _fail(where, f"{key}.sha256", "64 lowercase hex digits", digest)
        if not _int(size, 0, MAX_BUNDLE_BYTES.get()):
            raise _fail(where, f"{key}.size", f"a byte count from 0 to {MAX_BUNDLE_BYTES.get():,}", size)
        out[name] = FileEntry(name, digest, size)
    for required in REQUIRED:
        if required not in out:
            raise BundleError(f"{where}: bundle lists no {required}; reconvert the model")
    return out


def _golden(section: Any, where: str, files: Mapping[str, FileEntry], classes: int) -> None:
    if not isinstance(section, dict):
        raise _fail(where, "golden", "a JSON object", section)
    photos = section.get("photos", [])
    if not isinstance(photos, list) or len(photos) > MAX_PHOTOS:
        raise _fail(where, "golden.photos", f"a list of at most {MAX_PHOTOS} photos", photos)
    for key in ("backend", "interpreter"):
        if key in section and not isinstance(section[key], str):
            raise _fail(where, f"golden.{key}", "a string", section[key])
    if "threads" in section and not _int(section["threads"], 1, 1 << 16):
        raise _fail(where, "golden.threads", "a positive integer", section["threads"])
    for i, p in enumerate(photos):
        key = f"golden.photos[{i}]"
        if not isinstance(p, dict):
            raise _fail(where, key, "an object", p)
        name = p.get("file", _MISSING)
        if not isinstance(name, str) or name not in files:
            raise _fail(where, f"{key}.file", "a file listed in files", name)
        if not isinstance(p.get("label", ""), str):
            raise _fail(where, f"{key}.label", "a string", p["label"])
        if "input_sha256" in p and not (isinstance(p["input_sha256"], str) and _HEX64.match(p["input_sha256"])):
            raise _fail(where, f"{key}.input_sha256", "64 lowercase hex digits", p["input_sha256"])
        raw = p.get("raw", _MISSING)
        if not isinstance(raw, list) or len(raw) != classes or not all(_num(v) for v in raw):
            raise _fail(where, f"{key}.raw", f"a list of {classes} numbers (one per class)", raw)
        top = p.get("top_k", _MISSING)
        if (not isinstance(top, list) or not 1 <= len(top) <= classes
                or not all(isinstance(t, list) and len(t) == 2 and _int(t[0], 0, classes - 1) and _num(t[1])
                           for t in top)):
            raise _fail(where, f"{key}.top_k", f"a non-empty list of [class index below {classes}, score]", top)
