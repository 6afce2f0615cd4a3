"""Seeded, bounded fuzzing (issue 18): the label and metadata parsers, byte-flipped bundle archives,
images and models. Each input ends in a result or in the module's own one-line error, never a
traceback, never a hang (every case runs under a timer). Hypothesis runs derandomized, so a
failure reproduces; the byte-flip loops are seeded."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import random
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import CORAL, ROOT, coral_bundle_meta
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edge_runtime import write_bundle
from edge_runtime.bundle.format import load_bundle
from edge_runtime.bundle.meta import check_meta, parse_meta
from edge_runtime.errors import BundleError, EdgeclsError, ImageError, LabelError
from edge_runtime.model.labels import parse_labels
from edge_runtime.model.preprocess import load_image

MODEL = CORAL / "mobilenet_v1_0.25_128_quant.tflite"
FUZZ = settings(derandomize=True, max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@contextlib.contextmanager
def within(seconds: float, what: object):
    """Fail, instead of hanging, when the block takes longer than ``seconds``."""
    def expire(*_):
        raise TimeoutError(f"{what!r:.200}: still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def flip(data: bytes, r: random.Random, most: int = 8) -> bytes:
    b = bytearray(data)
    for _ in range(r.randint(1, most)):
        b[r.randrange(len(b))] = r.randrange(256)
    return bytes(b)


# --- label parser ----------------------------------------------------------------------------

coral_line = st.tuples(st.integers(0, 10**12), st.text(st.characters(blacklist_categories=("Cs",)), max_size=20))


@FUZZ
@given(st.one_of(st.text(max_size=3000),
                 st.lists(coral_line, max_size=50).map(lambda ls: "\n".join(f"{n} {t}" for n, t in ls))),
       st.one_of(st.none(), st.integers(1, 2000)))
def test_label_parser(text, classes):
    with within(5, text):
        try:
            labels = parse_labels(text, classes, "fuzz.txt")
        except LabelError as e:
            assert str(e).startswith("fuzz.txt: ") and "\n" not in str(e)
            return
    assert all(isinstance(x, str) for x in labels)
    assert len(labels) <= 100_000  # never more than the default class bound, whatever the indexes say


# --- edgecls.json validator ------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=30),
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=12), kids, max_size=5),
    max_leaves=30)


def _valid_meta() -> dict:
    meta = coral_bundle_meta(MODEL.stem)
    meta.update(format_version=1, files={"model.tflite": {"sha256": "a" * 64, "size": 10},
                                         "labels.txt": {"sha256": "b" * 64, "size": 5},
                                         "golden/00-cat.bmp": {"sha256": "c" * 64, "size": 7}},
                golden={"photos": [{"file": "golden/00-cat.bmp", "label": "cat", "input_sha256": "d" * 64,
                                    "raw": [0] * 1001, "top_k": [[283, 0.5]]}]})
    return meta


def _paths(d, prefix=()):
    """Every key path of a JSON object (lists by index)."""
    items = d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else ()
    for k, v in items:
        yield prefix + (k,)
        if not (isinstance(v, list) and len(v) > 20):  # not every one of 1001 raw values
            yield from _paths(v, prefix + (k,))


PATHS = list(_paths(_valid_meta()))


def test_the_valid_metadata_is_valid():
    check_meta(_valid_meta(), "edgecls.json")


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(PATHS), json_values), min_size=1, max_size=3))
def test_metadata_validator_on_mutated_metadata(changes):
    meta = _valid_meta()
    for path, value in changes:
        d = meta
        try:
            for k in path[:-1]:
                d = d[k]
            d[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    with within(5, changes):
        try:
            m = check_meta(meta, "edgecls.json")
        except BundleError as e:
            assert str(e).startswith("edgecls.json: ") and "\n" not in str(e), str(e)
            return
    assert 0 < m.input.height <= 4096 and m.output.classes >= 1 and "model.tflite" in m.files


@FUZZ
@given(st.one_of(st.binary(max_size=2000), json_values.map(lambda v: json.dumps(v).encode()),
                 st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n)))
def test_metadata_parser_on_any_bytes(data):
    with within(5, data[:100]):
        with pytest.raises(BundleError) as e:
            parse_meta(data, "edgecls.json")
    assert str(e.value).startswith("edgecls.json: ") and "\n" not in str(e.value)


# --- byte-flipped bundles, images, models -----------------------------------------------------


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[bytes, bytes]:
    """A real bundle archive: its gzip bytes, and the tar inside."""
    d = tmp_path_factory.mktemp("bundle")
    write_bundle(d / "b", {"model.tflite": MODEL, "labels.txt": CORAL / "imagenet_labels.txt"},
                 coral_bundle_meta(MODEL.stem), tar=True)
    gz = (d / "b.tar.gz").read_bytes()
    return gz, gzip.decompress(gz)


@pytest.mark.parametrize("layer", ["gzip", "tar"])
def test_byte_flipped_bundle_archives(archive, tmp_path, layer):
    gz, tar = archive
    r = random.Random(18)
    outcomes = {"ok": 0, "error": 0}
    for i in range(40):
        if layer == "gzip":
            data = flip(gz, r)
        else:  # flips in the tar headers and edgecls.json, re-compressed so gzip's CRC passes
            t = bytearray(tar)
            for _ in range(r.randint(1, 8)):
                t[r.choice([r.randrange(4096), len(t) - 1 - r.randrange(20_000), r.randrange(len(t))])] = r.randrange(256)
            data = gzip.compress(bytes(t), 1)
        path = tmp_path / f"{i}.tar.gz"
        path.write_bytes(data)
        with within(20, f"{layer} seed 18 case {i}"):
            try:
                b = load_bundle(path)
            except EdgeclsError as e:
                assert str(path) in str(e) and "\n" not in str(e), str(e)
                outcomes["error"] += 1
            else:
                outcomes["ok"] += 1
                b._tmp.cleanup()
        path.unlink()
    assert outcomes["error"] >= 10, outcomes  # the flips do reach the checks


def _images() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    out = {}
    for fmt, kw in (("PNG", {}), ("JPEG", {"quality": 80}), ("JPEG", {"progressive": True}), ("BMP", {}),
                    ("GIF", {}), ("WEBP", {}), ("TIFF", {}), ("PPM", {})):
        buf = io.BytesIO()
        rgb.save(buf, fmt, **kw)
        out[f"{fmt}{'-p' if kw.get('progressive') else ''}"] = buf.getvalue()
    return out


@pytest.mark.parametrize("fmt,data", sorted(_images().items()))
def test_byte_flipped_images(tmp_path, fmt, data):
    r = random.Random(fmt)
    path = tmp_path / "x.img"
    errors = 0
    for i in range(60):
        variant = flip(data, r, 4) if i % 3 else data[: r.randrange(len(data))]  # flips, and truncations
        path.write_bytes(variant)
        with within(10, f"{fmt} case {i}"):
            try:
                a = load_image(path)
            except ImageError as e:
                assert str(e).startswith(str(path)) and "\n" not in str(e), str(e)
                errors += 1
                continue
        assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 and a.size <= 16_000_000 * 3


def test_byte_flipped_models(tmp_path):
    """In a subprocess, since a crash in the interpreter would take pytest with it."""
    p = subprocess.run([sys.executable, str(ROOT / "tests" / "tools" / "fuzz_models.py"), str(MODEL),
                        str(CORAL / "cat.bmp"), "0", "60", str(tmp_path)], capture_output=True, text=True, timeout=300)
    lines = p.stdout.splitlines()
    assert p.returncode == 0, f"crashed ({p.returncode}) after: {lines[-1:]} {p.stderr[-1000:]}"
    results = [line.split()[1] for line in lines]
    assert len(results) == 60 and set(results) <= {"ok", "err"}, [line for line in lines if "EXC" in line]
    assert results.count("err") >= 5  # the flips do reach the loader's checks
