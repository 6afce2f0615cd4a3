"""The benchmark core: what LiteRT's ``benchmark_model`` reports (interpreter creation and tensor
allocation, first inference, warm-up, invoke latency statistics over the counted runs, memory),
plus what it leaves out: the whole path from image to label stage by stage, and the state of the
machine (governor, a Pi's temperature and throttling before and after) that can spoil a number.

Each configuration (model x backend x threads) runs in a fresh Python process by default, so its
memory figures are its own and a backend that crashes spoils only its own row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from . import __version__
from . import machine as _machine
from .machine import board_state, peak_rss_mb, rss_mb
from .errors import EdgeclsError, MissingExtra
from .postprocess import top_k
from .preprocess import iter_images, resize

def machine() -> dict[str, Any]:
    """The machine a benchmark ran on (kept for result files that call it by this name)."""
    return _machine.summary()


# --- one configuration ---------------------------------------------------------------------


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """count, min, mean, std, p50, p90, p99, max in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"count": int(ms.size), "min": float(ms.min()), "mean": float(ms.mean()), "std": float(ms.std()),
            "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(ms.max())}


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
    from .classifier import Classifier

    if (cfg.runs is None) == (cfg.seconds is None):
        raise ValueError("give either runs or seconds")
    if (cfg.runs is not None and cfg.runs < 1) or (cfg.seconds is not None and cfg.seconds <= 0) or cfg.warmup < 0:
        raise ValueError("runs must be at least 1, seconds above 0, warmup at least 0")
    images = _images(cfg.input)
    rss0 = rss_mb()
    t0 = time.perf_counter()
    clf = Classifier(cfg.model, labels=cfg.labels, backend=cfg.backend, threads=cfg.threads,  # type: ignore[arg-type]
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
    image = images[0] if images else _golden_photo(clf)
    if image:
        row["end_to_end_ms"] = end_to_end(clf, image, max(5, min(50, len(lat) // 4)))
        row["end_to_end_image"] = image
        row["decode"] = clf.decode
    clf.close()
    return row


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


# --- sweeps --------------------------------------------------------------------------------


def _in_subprocess(cfg: Config, timeout: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    try:
        p = subprocess.run([sys.executable, "-m", "edge_runtime.bench", json.dumps(cfg.__dict__)],
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
          progress: Any = None) -> dict[str, Any]:
    """Every model x backend x threads; a configuration that cannot run gets a row saying why."""
    before = board_state()
    rows = []
    for model in models:
        for backend in backends:
            for n in threads:
                cfg = Config(model, backend, n, runs, seconds, warmup, input, labels, interpreter)
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
    from .errors import BackendUnavailable

    try:
        return measure(cfg)
    except BackendUnavailable as e:
        return {"status": "unavailable", "reason": str(e)}
    except (EdgeclsError, ValueError) as e:
        return {"status": "error", "reason": str(e)}


def _worker(arg: str) -> int:
    sys.stdout.write(json.dumps(_measure_here(Config(**json.loads(arg)))) + "\n")
    return 0


# --- reports -------------------------------------------------------------------------------


def device_name(result: dict[str, Any]) -> str:
    m = result.get("machine", {})
    return m.get("board") or f"{m.get('cpu', '?')} ({m.get('arch', '?')}, {m.get('cores', '?')} cores)"


def _rows(results: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(device_name(r), row) for r in results for row in r["results"]]


def table(results: Sequence[dict[str, Any]], markdown: bool = False) -> str:
    """One table over one or several result files (several devices in ``compare``)."""
    head = ["device", "model", "backend", "threads", "size KiB", "create ms", "first ms", "p50 ms", "p90 ms",
            "p99 ms", "mean ms", "per s", "RSS +MiB", "end to end ms"]
    lines = []
    for dev, r in _rows(results):
        name = Path(r["model"]).name
        if r.get("status") != "ok":
            cells = [dev, name, r["backend"], str(r["threads"] or "all"), "", "", "", "", "", "", "", "", "",
                     f"{r.get('status')}: {r.get('reason', '')}"[:120]]
        else:
            s = r["invoke_ms"]
            e2e = r.get("end_to_end_ms", {}).get("total")
            cells = [dev, name, r["backend"], str(r["threads"]), f"{r['file_bytes'] / 1024:.0f}", f"{r['create_ms']:.1f}",
                     f"{r['first_invoke_ms']:.2f}", f"{s['p50']:.3f}", f"{s['p90']:.3f}", f"{s['p99']:.3f}",
                     f"{s['mean']:.3f}", f"{r['throughput_per_s']:.0f}", f"{r['rss_mb']['added_by_load']:.1f}",
                     "" if e2e is None else f"{e2e:.2f}"]
        lines.append(cells)
    if len({c[0] for c in lines}) <= 1:  # one device: no column for it
        head, lines = head[1:], [c[1:] for c in lines]
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        out += ["| " + " | ".join(c) + " |" for c in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(c[i]) for c in lines)) if lines else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*c).rstrip() for c in [head, *lines])


def machine_lines(result: dict[str, Any]) -> list[str]:
    m = result["machine"]
    lines = [f"{device_name(result)}: {m['cpu']}, {m['cores']} cores, {m['arch']}, governor {m['governor'] or 'n/a'}, "
             f"edgecls {m['edgecls']}, " + ", ".join(f"{k} {v}" for k, v in m["interpreters"].items())]
    for when in ("before", "after"):
        b = result[f"board_{when}"]
        if b["temperature_c"] is not None or b["throttled"] is not None:
            lines.append(f"  board {when}: {b['temperature_c']} C, throttled {b['throttled']} "
                         f"{', '.join(b['throttle_flags'])}".rstrip())
    lines += [f"  warning: {w}" for w in m["warnings"]]
    if result["board_after"].get("throttle_flags"):
        lines.append("  warning: the board throttled during the run; these numbers are not its best")
    return lines


def markdown(results: Sequence[dict[str, Any]]) -> str:
    out = ["# edgecls bench", ""]
    for r in results:
        out += [f"- {line.strip()}" for line in machine_lines(r)]
    return "\n".join(out + ["", table(results, markdown=True), ""])


def plot(results: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """p50 invoke latency per configuration (and device), as a bar chart."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise MissingExtra("--plot", "plot", "matplotlib") from e
    rows = [(dev, r) for dev, r in _rows(results) if r.get("status") == "ok"]
    if not rows:
        raise EdgeclsError("nothing to plot: no configuration ran")
    labels = [f"{Path(r['model']).name}\n{r['backend']}, {r['threads']} thr" + (f"\n{dev}" if len(results) > 1 else "")
              for dev, r in rows]
    p50 = [r["invoke_ms"]["p50"] for _, r in rows]
    err = [[max(0.0, r["invoke_ms"]["p50"] - r["invoke_ms"]["min"]) for _, r in rows],
           [max(0.0, r["invoke_ms"]["p90"] - r["invoke_ms"]["p50"]) for _, r in rows]]
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(rows)), 4))
    ax.bar(range(len(rows)), p50, yerr=err, capsize=3, color="#4c72b0")
    ax.set_xticks(range(len(rows)), labels, fontsize=7)
    ax.set_ylabel("invoke latency, ms (p50; bars: min to p90)")
    ax.set_title("edgecls bench")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def load_results(paths: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        try:
            r = json.loads(Path(p).read_text())
        except (OSError, ValueError) as e:
            raise EdgeclsError(f"{p}: not a result file of edgecls bench --save ({e})") from None
        if not isinstance(r, dict) or "results" not in r or "machine" not in r:
            raise EdgeclsError(f"{p}: not a result file of edgecls bench --save (no 'results' and 'machine')")
        out.append(r)
    return out


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1]))
