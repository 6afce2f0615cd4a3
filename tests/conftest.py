"""Shared fixtures: the shared assets, Coral's golden rows, and a runner for the edgecls command."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSETS = Path(os.environ.get("EDGECLS_ASSETS", ROOT.parent / "shared" / "assets"))
CORAL = ASSETS / "coral"
CACHE = Path(os.environ.get("EDGECLS_TEST_CACHE", ROOT / ".cache"))

# Coral's published expectations (shared/assets/README.md): model, image, label index, k, min score, labels.
GOLDEN = [
    ("mobilenet_v1_0.25_128_quant", "cat.bmp", 283, 3, 0.25, "imagenet_labels.txt"),
    ("mobilenet_v1_0.5_160_quant", "cat.bmp", 286, 1, 0.51, "imagenet_labels.txt"),
    ("mobilenet_v1_0.75_192_quant", "cat.bmp", 283, 1, 0.35, "imagenet_labels.txt"),
    ("mobilenet_v2_1.0_224_quant", "cat.bmp", 286, 1, 0.7, "imagenet_labels.txt"),
    ("tf2_mobilenet_v2_1.0_224_ptq", "cat.bmp", 286, 1, 0.6, "imagenet_labels.txt"),
    ("mobilenet_v2_1.0_224_inat_bird_quant", "bird.bmp", 659, 1, 0.5, "inat_bird_labels.txt"),
    ("mobilenet_v2_1.0_224_inat_bird_quant", "parrot.jpg", 923, 1, 0.6, "inat_bird_labels.txt"),
]
GOLDEN_IDS = [f"{m}-{img}" for m, img, *_ in GOLDEN]
# Coral's C++ tests resize with TFLite's default bilinear (no half-pixel centres).
CORAL_RESIZE = "bilinear-legacy"


ASSET_WORDS = ("CORAL", "ASSETS", "SIGN", "coral_bundle", "sign_")


def _needs_assets(item) -> bool:
    """Whether a test reads ../shared/assets: it is marked ``assets``, or its code, one of its
    fixtures, or a module-level path it names points there."""
    if item.get_closest_marker("assets"):
        return True
    module = vars(item.module)
    words = ASSET_WORDS + tuple(k for k, v in module.items()
                                if isinstance(v, Path) and str(v).startswith(str(ASSETS)))
    words += tuple(k for k, v in module.items() if inspect.isfunction(v) and not k.startswith("test_")
                   and v.__module__ == item.module.__name__ and any(w in _source(v) for w in words))
    funcs = [item.function] + [d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs]
    for f in funcs:
        if any(w in _source(f) for w in words):
            return True
    return False


def _source(f) -> str:
    try:
        return inspect.getsource(f)
    except (OSError, TypeError):
        return ""


def pytest_collection_modifyitems(config, items):
    """Without ../shared/assets, skip just the tests that need them; the rest still run."""
    if CORAL.is_dir():
        return
    skip = pytest.mark.skip(reason=f"shared assets not found at {ASSETS}")
    for item in items:
        if _needs_assets(item):
            item.add_marker(skip)


def run_edgecls(*args: str, python: str = sys.executable, env: dict[str, str] | None = None,
                timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the edgecls command in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([python, "-m", "edge_runtime.cli", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """A user error: non-zero exit, no traceback, one 'edgecls: error:' line naming what it must."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("edgecls: error:")]
    assert len(errors) == 1, proc.stderr
    for f in fragments:
        assert f in errors[0], errors[0]
    return errors[0]


def coral_bundle_meta(model: str, resize: str = CORAL_RESIZE) -> dict:
    """edgecls.json fields for a bundle made from one of Coral's ImageNet models (raw pixels in);
    the input size is the one in the model's name (mobilenet_v1_0.25_128_quant: 128)."""
    size = int(re.search(r"_(\d{3})_(?:quant|ptq)", model).group(1))
    return {"name": model, "input": {"height": size, "width": size, "channels": 3, "color_order": "RGB",
                                      "resize": resize, "crop": "none",
                                      "normalization": {"mean": 128.0, "std": 128.0}},
            "output": {"kind": "probabilities", "classes": 1001}, "source": {"coral": model}}


def make_coral_bundle(dest: Path, model: str = "mobilenet_v1_0.25_128_quant", resize: str = CORAL_RESIZE,
                      photos: tuple[str, ...] = ("cat.bmp", "bird.bmp", "parrot.jpg")) -> Path:
    """A bundle of one of Coral's models with golden photos recorded by the runtime, as convert
    does, without TensorFlow."""
    from edge_runtime import Classifier, golden, write_bundle
    from edge_runtime.model.contract import InputContract

    meta = coral_bundle_meta(model, resize)
    contract = InputContract.from_json(meta["input"])
    with Classifier(CORAL / f"{model}.tflite", labels=CORAL / "imagenet_labels.txt", backend="cpu",
                    resize=contract.resize, crop=contract.crop, normalization=contract.normalization) as clf:
        record, files = golden.record(clf, [golden.Photo(CORAL / p, "?", p) for p in photos])
    files.update({"model.tflite": CORAL / f"{model}.tflite", "labels.txt": CORAL / "imagenet_labels.txt"})
    return write_bundle(dest, files, {**meta, "golden": record})


@pytest.fixture
def coral_bundle(tmp_path):
    """A bundle made from Coral's mobilenet_v1_0.25_128_quant, written by the runtime's writer."""
    from edge_runtime import write_bundle

    model = "mobilenet_v1_0.25_128_quant"
    return write_bundle(tmp_path / "coral-v1", {"model.tflite": CORAL / f"{model}.tflite",
                                                "labels.txt": CORAL / "imagenet_labels.txt"},
                        coral_bundle_meta(model))


def assert_golden(classes: list[dict], index: int, k: int, min_score: float) -> None:
    """Coral's check: the expected label is among the top-k with at least min_score. A tie at the
    k-th place counts as in (tflite-runtime 2.14 scores tabby and tiger cat both 0.402 on the
    v1 0.75 row): fewer than k classes may score strictly higher. ``classes`` must reach past k."""
    hits = [c for c in classes if c["index"] == index]
    assert hits, f"label {index} not among {classes}"
    score = hits[0]["score"]
    higher = [c for c in classes if c["score"] > score]
    assert len(higher) < k, f"label {index} ({score}) is behind {higher}"
    assert score >= min_score, f"label {index} scores {score} < {min_score}"


# --- the sign-language run and its bundle (trained once per code version) -----------------

SIGN_DATA = ASSETS / "datasets" / "sign_language_digits"
KERAS_WEIGHTS = ASSETS / "keras_weights" / "mobilenet_2_5_224_tf_no_top.h5"
# The training issue's command, as a user types it.
SIGN_TRAIN = ["--arch", "mobilenet_v1", "--alpha", "0.25", "--size", "128", "--weights", str(KERAS_WEIGHTS)]


def _code_key() -> str:
    """Changes whenever the code that trains, converts or runs a model changes."""
    import hashlib

    h = hashlib.sha256()
    for pkg in ("train", "convert", "edge_runtime"):
        for f in sorted((ROOT / pkg).rglob("*.py")):
            h.update(f.relative_to(ROOT).as_posix().encode() + f.read_bytes())
    return h.hexdigest()[:16]


@contextlib.contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Hold .cache/.NAME.lock: a cache entry is built by one process while the others (pytest-xdist
    workers, other checkouts sharing .cache) wait for it, instead of building it twice."""
    import fcntl

    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def colours_bundle(tmp_path_factory) -> Path:
    """test_teach.py's tiny colour model (red, green, yellow, dark; blue it cannot tell from dark)
    converted by `edgecls convert` (features on, as by default), once for every module that
    teaches it (test_teach, test_teach_swap, test_teach_web). Read-only: copy it to write beside it."""
    from convert.run import Options, convert
    from test_teach import CLASSES, _dataset, _model

    root = tmp_path_factory.mktemp("teach")
    data = _dataset(root / "data", {c: 150 for c in CLASSES})
    (root / "labels.txt").write_text("".join(c + "\n" for c in CLASSES))
    opts = Options(labels=str(root / "labels.txt"), calibration_data=str(data), calibration=50)
    return convert(_model(root / "colours.keras"), root / "parent", opts, progress=lambda s: None).bundle


@pytest.fixture(scope="session")
def sign_run() -> Path:
    """runs/sign of the training issue, trained with the exact command of its acceptance check.
    Cached in .cache/sign-<code key> so that a rerun of unchanged code does not retrain."""
    base = CACHE / f"sign-{_code_key()}"
    run = base / "run"
    with cache_lock(base.name):
        _train_sign(base, run)
    return run


def _train_sign(base: Path, run: Path) -> None:
    if not (run / "metrics.json").exists():
        import shutil

        shutil.rmtree(base, ignore_errors=True)  # an unfinished run of this code
        for old in CACHE.glob("sign-*"):  # runs of older code, unused for a day (other checkouts share .cache)
            if time.time() - old.stat().st_mtime > 86400:
                shutil.rmtree(old, ignore_errors=True)
        base.mkdir(parents=True)
        p = run_edgecls("train", SIGN_DATA, "--out", run, *SIGN_TRAIN, timeout=1200)
        assert p.returncode == 0, p.stderr[-4000:]
        (base / "train.log").write_text(p.stderr)


@pytest.fixture(scope="session")
def sign_bundle(sign_run) -> Path:
    """The bundle `edgecls convert runs/sign --out ... --edgetpu --tar` writes (no compiler here)."""
    bundle = sign_run.parent / "bundle"
    with cache_lock(sign_run.parent.name):
        _convert_sign(sign_run, bundle)
    return bundle


def _convert_sign(sign_run: Path, bundle: Path) -> None:
    if not (bundle / "edgecls.json").exists():
        p = run_edgecls("convert", sign_run, "--out", bundle, "--edgetpu", "--tar", timeout=900)
        assert p.returncode in (0, 3), p.stderr[-4000:]  # 3: bundle written, no edgetpu_compiler here
        (sign_run.parent / "convert.log").write_text(p.stdout + p.stderr)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real OpenSSH server on 127.0.0.1 (tests/sshd.py), one per test module."""
    import sshd

    if not Path(sshd.SSHD).exists():
        pytest.skip("openssh-server is not installed (apt-get install openssh-server)")
    s = sshd.start(tmp_path_factory.mktemp("sshd"))
    yield s
    s.stop()


@pytest.fixture
def broker(tmp_path):
    """A real mosquitto broker on a free 127.0.0.1 port (tests/mosquitto.py), stopped after the test."""
    import mosquitto

    if not Path(mosquitto.MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (apt-get install mosquitto; .ci/run does)")
    pytest.importorskip("paho.mqtt.client")
    b = mosquitto.Broker(tmp_path).start()
    yield b
    b.stop()


# The arm64 tier's shared fixture: arm64s(release) is that release's emulated Raspberry Pi OS,
# built once a session (tests/arm64.py).
from arm64 import arm64s  # noqa: F401


# --- leaving ---------------------------------------------------------------------------------

_EXIT: dict[str, int] = {}


def pytest_sessionfinish(session, exitstatus):
    _EXIT["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave with pytest's own status once it has reported. One process that has loaded TensorFlow,
    LiteRT, MediaPipe and OpenCV for 600 tests was seen to abort in their native teardown at exit
    ("free(): invalid pointer", status 134) after every result was printed; nothing is left to run
    then but that teardown. EDGECLS_TEST_FULL_EXIT=1 runs it (to debug the abort)."""
    if "status" in _EXIT and os.environ.get("EDGECLS_TEST_FULL_EXIT") != "1":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT["status"])
