"""The benchmark core: interpreter start-up, first inference, invoke latency statistics and the
end-to-end path stage by stage."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from .classifier import Classifier
from .preprocess import load_image


def latency_stats(seconds: list[float]) -> dict[str, float]:
    """min, mean, std, p50, p90, p99, max in milliseconds, and the count."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"count": int(ms.size), "min": float(ms.min()), "mean": float(ms.mean()), "std": float(ms.std()),
            "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(ms.max())}


def random_input(clf: Classifier, seed: int = 0) -> np.ndarray:
    spec = clf.engine.input
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=spec.shape[1:], dtype=np.uint8)
    return clf.to_input(pixels)


def run(model: str, labels: str | None = None, backend: str = "auto", threads: int | None = None,
        runs: int = 50, warmup: int = 5, image: str | None = None, interpreter: str | None = None) -> dict[str, Any]:
    """Benchmark one model on one backend; returns a JSON-ready dict."""
    if runs < 1 or warmup < 0:
        raise ValueError("runs must be at least 1 and warmup at least 0")
    t0 = time.perf_counter()
    clf = Classifier(model, labels=labels, backend=backend, threads=threads, interpreter=interpreter)  # type: ignore[arg-type]
    load_s = time.perf_counter() - t0
    x = clf.preprocess(image) if image else random_input(clf)
    t = time.perf_counter()
    clf.engine.run(x)
    first_s = time.perf_counter() - t
    for _ in range(warmup):
        clf.engine.run(x)
    lat = []
    for _ in range(runs):
        t = time.perf_counter()
        clf.engine.run(x)
        lat.append(time.perf_counter() - t)
    result: dict[str, Any] = {**clf.describe(), "file_bytes": os.path.getsize(clf.model_path),
                              "load_ms": load_s * 1e3, "first_invoke_ms": first_s * 1e3,
                              "warmup": warmup, "invoke_ms": latency_stats(lat)}
    if image:
        stages: dict[str, list[float]] = {"decode": [], "resize+convert": [], "invoke": [], "postprocess": []}
        for _ in range(max(1, runs // 5)):
            t = time.perf_counter()
            rgb = load_image(image)
            t1 = time.perf_counter()
            xi = clf.preprocess(rgb)
            t2 = time.perf_counter()
            raw = clf.engine.run(xi)
            t3 = time.perf_counter()
            clf.scores(raw)
            t4 = time.perf_counter()
            for k, a, b in (("decode", t, t1), ("resize+convert", t1, t2), ("invoke", t2, t3), ("postprocess", t3, t4)):
                stages[k].append(b - a)
        result["end_to_end_ms"] = {k: latency_stats(v)["p50"] for k, v in stages.items()}
        result["image"] = image
    clf.close()
    return result
