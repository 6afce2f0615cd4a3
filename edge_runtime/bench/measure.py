"""The benchmark core: what LiteRT's ``benchmark_model`` reports (interpreter creation and tensor
allocation, first inference, warm-up, invoke latency statistics over the counted runs, memory),
plus what it leaves out: the whole path from image to label stage by stage, and the state of the
machine (governor, a Pi's temperature and throttling before and after) that can spoil a number.

Each configuration (model x backend x threads) runs in a fresh Python process by default, so its
memory figures are its own and a backend that crashes spoils only its own row.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge_runtime._version import __version__
from edge_runtime.bench.imx500 import bench_row
from edge_runtime.bench.stats import latency_stats
from edge_runtime.bundle.format import is_bundle
from edge_runtime.errors import EdgeclsError
from edge_runtime.live.zones import Zone, parse_zones
from edge_runtime.model.postprocess import top_k
from edge_runtime.model.preprocess import iter_images, resize
from edge_runtime.system import machine as _machine
from edge_runtime.system.machine import board_state, peak_rss_mb, rss_mb


def machine() -> dict[str, Any]:
    """The machine a benchmark ran on (kept for result files that call it by this name)."""
    return _machine.summary()


# --- one configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    model: str
    backend: str = "cpu"
    threads: int | None = None
    runs: int | None = 50  # counted invocations, or
    seconds: float | None = None  # ... invoke for this long
    warmup: int = 5
    input: str = "random"  # random, an image file, or a directory of images
    labels: str | None = None
    interpreter: str | None = None
    zones: tuple[str, ...] = ()  # --zone NAME=X,Y,W,H: each zone of the image, cropped and classified on its own


def _images(spec: str) -> list[str]:
    if spec == "random":
        return []
    p = Path(spec)
    if p.is_dir():
        found = list(iter_images([spec]))
        if not found:
            raise EdgeclsError(f"{spec}: no images in this directory (jpg, png, bmp, ...)")
        return found
    if not p.exists():
        raise EdgeclsError(f"{spec}: no such image or directory; --input takes random, an image or a directory")
    return [spec]


def measure(cfg: Config) -> dict[str, Any]:
    """Benchmark one configuration in this process; returns one JSON-ready row."""
    from edge_runtime.bundle.classifier import Classifier

    if (cfg.runs is None) == (cfg.seconds is None):
        raise ValueError("give either runs or seconds")
    if (cfg.runs is not None and cfg.runs < 1) or (cfg.seconds is not None and cfg.seconds <= 0) or cfg.warmup < 0:
        raise ValueError("runs must be at least 1, seconds above 0, warmup at least 0")
    if cfg.backend == "imx500":  # the network runs on the AI Camera's sensor: its own measurement
        return bench_row(cfg.model, cfg.runs, cfg.seconds, cfg.warmup)
    images = _images(cfg.input)
    zones = parse_zones(cfg.zones)  # a bad spec is refused before the model loads
    rss0 = rss_mb()
    t0 = time.perf_counter()
    labels = None if is_bundle(cfg.model) else cfg.labels  # --labels is for the bare models among them
    clf = Classifier(cfg.model, labels=labels, backend=cfg.backend, threads=cfg.threads,  # type: ignore[arg-type]
                     interpreter=cfg.interpreter)
    create_s = time.perf_counter() - t0
    rss_loaded = rss_mb()
    if images:
        inputs = [clf.prepare(p) for p in images]
    else:
        rng = np.random.default_rng(0)
        inputs = [clf.prepare(rng.integers(0, 256, size=(clf.height, clf.width, 3), dtype=np.uint8))]
    t = time.perf_counter()
    clf.infer(inputs[0])
    first_s = time.perf_counter() - t
    feed = cycle(inputs)
    for _ in range(cfg.warmup):
        clf.infer(next(feed))
    lat: list[float] = []
    deadline = time.perf_counter() + (cfg.seconds or 0)
    while (len(lat) < cfg.runs) if cfg.runs is not None else (time.perf_counter() < deadline or not lat):
        x = next(feed)
        t = time.perf_counter()
        clf.infer(x)
        lat.append(time.perf_counter() - t)
    stats = latency_stats(lat)
    d = clf.describe()
    row: dict[str, Any] = {
        "status": "ok", "model": cfg.model, "model_file": d["model"], "file_bytes": os.path.getsize(d["model"]),
        "backend": d["backend"], "threads": d["threads"], "interpreter": d["interpreter"],
        "interpreter_version": d["interpreter_version"], "input": cfg.input, "inputs": len(inputs),
        "input_conversion": d["input"]["conversion"], "create_ms": create_s * 1e3, "first_invoke_ms": first_s * 1e3,
        "warmup": cfg.warmup, "invoke_ms": stats, "throughput_per_s": 1e3 / stats["mean"],
        "rss_mb": {"before_load": rss0, "after_load": rss_loaded, "added_by_load": rss_loaded - rss0,
                   "peak": peak_rss_mb()},
        "notes": d["notes"],
    }
    image = images[0] if images else (_golden_photo(clf) or sample_jpeg())
    row["end_to_end_ms"] = end_to_end(clf, image, max(5, min(50, len(lat) // 4)))
    row["end_to_end_image"] = image if image != sample_jpeg() else SAMPLE_JPEG_NAME
    row["decode"] = clf.decode
    if zones:
        row["zones_ms"] = zones_end_to_end(clf, image, zones, max(5, min(50, len(lat) // 4)))
    clf.close()
    return row


SAMPLE_JPEG_NAME = "a synthetic 640x480 JPEG"


@functools.lru_cache(maxsize=1)
def sample_jpeg() -> str:
    """A 640x480 JPEG for the end-to-end stages of a bare model given no --input: smooth
    gradients with sensor-like noise (a photo's decode cost), written once per process."""
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:480, 0:640].astype(np.float32)
    base = np.stack([x / 640 * 255, y / 480 * 255, (x + y) / 1120 * 255], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    fd, path = tempfile.mkstemp(prefix="edgecls-bench-", suffix=".jpg")
    with os.fdopen(fd, "wb") as f:
        Image.fromarray(pixels).save(f, "JPEG", quality=90)
    atexit.register(os.unlink, path)
    return path


def _golden_photo(clf: Any) -> str | None:
    photos = ((clf.bundle.meta.get("golden") or {}).get("photos") or []) if clf.bundle else []
    return str(clf.bundle.path / photos[0]["file"]) if photos else None


def end_to_end(clf: Any, image: str, repeats: int) -> dict[str, float]:
    """p50 of each stage from an image file to top-5 labels: ``decode`` (by the contract's decode
    mode), ``resize``, ``input`` (conversion to the input type), ``set_get`` (copying the tensor in
    and the output out: ``infer`` less a bare ``invoke``), ``invoke``, ``postprocess``; ``total``
    is their sum, and ``classify`` one ``Classifier.classify`` call, which resizes straight into
    the input tensor and so skips the ``set_tensor`` copy."""
    stages: dict[str, list[float]] = {k: [] for k in ("decode", "resize", "input", "infer", "invoke", "postprocess",
                                                      "classify")}
    small = np.empty((clf.height, clf.width, 3), np.uint8)
    for _ in range(repeats):
        t0 = time.perf_counter()
        rgb = clf.preprocessor.decode_image(image)
        t1 = time.perf_counter()
        resize(rgb, clf.height, clf.width, clf.resize_method, clf.crop, out=small)
        t2 = time.perf_counter()
        x = clf.to_input(small)
        t3 = time.perf_counter()
        raw = clf.infer(x)
        t4 = time.perf_counter()
        top_k(clf.scores(raw), clf.labels, 5)
        t5 = time.perf_counter()
        clf.invoke()
        t6 = time.perf_counter()
        clf.classify(image)
        t7 = time.perf_counter()
        for k, a, b in (("decode", t0, t1), ("resize", t1, t2), ("input", t2, t3), ("infer", t3, t4),
                        ("postprocess", t4, t5), ("invoke", t5, t6), ("classify", t6, t7)):
            stages[k].append(b - a)
    p50 = {k: float(np.median(v)) * 1e3 for k, v in stages.items()}
    out = {k: p50[k] for k in ("decode", "resize", "input")}
    out["set_get"] = max(0.0, p50["infer"] - p50["invoke"])
    out.update(invoke=p50["invoke"], postprocess=p50["postprocess"])
    out["total"] = sum(out.values())
    out["classify"] = p50["classify"]
    return out


def zones_end_to_end(clf: Any, image: str, zones: Sequence[Zone], repeats: int) -> dict[str, dict[str, float]]:
    """p50 per zone of ``image`` (decoded once, as a camera hands over its frame): ``crop_resize``
    (the crop and ``Classifier.prepare``), ``infer``, ``postprocess`` and their ``total``; and
    ``all`` the zones of one frame together, what ``--trigger always`` costs a frame."""
    pic = clf.preprocessor.decode_image(image)
    h, w = pic.shape[:2]
    boxes = [(z.name, z.box(w, h)) for z in zones]
    stages: dict[str, dict[str, list[float]]] = {n: {"crop_resize": [], "infer": [], "postprocess": []} for n, _ in boxes}
    for _ in range(repeats):
        for name, (x0, y0, x1, y1) in boxes:
            t0 = time.perf_counter()
            x = clf.prepare(np.ascontiguousarray(pic[y0:y1, x0:x1]))
            t1 = time.perf_counter()
            raw = clf.infer(x)
            t2 = time.perf_counter()
            top_k(clf.scores(raw), clf.labels, 5)
            t3 = time.perf_counter()
            for k, a, b in (("crop_resize", t0, t1), ("infer", t1, t2), ("postprocess", t2, t3)):
                stages[name][k].append(b - a)
    out: dict[str, dict[str, float]] = {}
    for name, st in stages.items():
        p50 = {k: float(np.median(v)) * 1e3 for k, v in st.items()}
        out[name] = {**p50, "total": sum(p50.values())}
    out["all"] = {"total": sum(z["total"] for z in out.values())}
    return out


# --- sweeps --------------------------------------------------------------------------------


def _in_subprocess(cfg: Config, timeout: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                        os.environ.get("PYTHONPATH", "")])}
    try:
        p = subprocess.run([sys.executable, "-m", "edge_runtime.bench.measure", json.dumps(cfg.__dict__)],
                           capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"no result within {timeout:.0f} s"}
    except OSError as e:  # no worker process possible (e.g. qemu-user without binfmt_misc): measure here
        row = _measure_here(cfg)
        row.setdefault("notes", []).append(f"measured in the calling process: a worker could not start ({e.strerror})")
        return row
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode == 0 and lines:
        return json.loads(lines[-1])
    if lines:
        return json.loads(lines[-1])  # a row with the error, written by the worker
    sig = f" (signal {-p.returncode})" if p.returncode < 0 else f" (exit {p.returncode})"
    tail = " | ".join(l.strip() for l in p.stderr.strip().splitlines()[-3:])
    return {"status": "error", "reason": f"crashed{sig}: {tail[-300:]}"}


def sweep(models: Sequence[str], backends: Sequence[str], threads: Sequence[int | None], *, runs: int | None = 50,
          seconds: float | None = None, warmup: int = 5, input: str = "random", labels: str | None = None,
          interpreter: str | None = None, isolate: bool = True, timeout: float = 600,
          progress: Any = None, zones: Sequence[str] = ()) -> dict[str, Any]:
    """Every model x backend x threads; a configuration that cannot run gets a row saying why."""
    before = board_state()
    rows = []
    for model in models:
        for backend in backends:
            for n in threads:
                cfg = Config(model, backend, n, runs, seconds, warmup, input, labels, interpreter, tuple(zones))
                if progress:
                    progress(f"bench: {Path(model).name} on {backend}, {n or 'all'} threads")
                row = _in_subprocess(cfg, timeout) if isolate else _measure_here(cfg)
                row = {"model": model, "backend": backend, "threads": n, **row}
                if row.get("status") == "ok":
                    row["backend"] = backend  # the row is for the backend asked for
                rows.append(row)
    return {"edgecls": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": machine(), "board_before": before, "board_after": board_state(), "results": rows}


def _measure_here(cfg: Config) -> dict[str, Any]:
    """``measure``, with a configuration that cannot run turned into its row."""
    from edge_runtime.errors import BackendUnavailable

    try:
        return measure(cfg)
    except BackendUnavailable as e:
        return {"status": "unavailable", "reason": str(e)}
    except (EdgeclsError, ValueError) as e:
        return {"status": "error", "reason": str(e)}


def _worker(arg: str) -> int:
    d = json.loads(arg)
    sys.stdout.write(json.dumps(_measure_here(Config(**{**d, "zones": tuple(d.get("zones") or ())}))) + "\n")
    return 0


# --- reports (in bench_report; re-exported for callers of this module) ----------------------

from edge_runtime.bench.report import device_name, machine_lines, markdown, plot, table  # noqa: E402,F401


def load_results(paths: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        try:
            r = json.loads(Path(p).read_text())
        except (OSError, ValueError) as e:
            raise EdgeclsError(f"{p}: not a result file of edgecls bench --save ({e})") from None
        for one in r if isinstance(r, list) else [r]:  # a fleet bench saves one result per device
            if not isinstance(one, dict) or "results" not in one or "machine" not in one:
                raise EdgeclsError(f"{p}: not a result file of edgecls bench --save (no 'results' and 'machine')")
            out.append(one)
    return out


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1]))
