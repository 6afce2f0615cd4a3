"""``edgecls bench`` and ``edgecls bench compare``: their options and outputs around the
benchmark core (``bench``) and its reports (``bench_report``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_runtime.bundle.classifier import BACKENDS
from edge_runtime.cli.args import SuggestingParser, nonneg_int, positive_float, positive_int, thread_list

BENCH_BACKENDS = (*BACKENDS, "imx500")  # imx500: the AI Camera's rate and DNN time from its metadata


def _backends(text: str) -> list[str]:
    out = [b.strip() for b in text.split(",") if b.strip()]
    bad = [b for b in out if b not in BENCH_BACKENDS]
    if not out or bad:
        raise argparse.ArgumentTypeError(f"unknown backend {', '.join(bad) or text!r}; valid: {', '.join(BENCH_BACKENDS)}")
    return out


def cmd_bench(a: argparse.Namespace) -> int:
    from edge_runtime.bench import measure as bench

    if a.runs is not None and a.seconds is not None:
        raise ValueError("give --runs or --seconds, not both")
    runs = a.runs if a.runs is not None or a.seconds is not None else 50
    from edge_runtime.live.zones import parse_zones

    parse_zones(a.zone)  # a bad --zone: one line before any model loads
    result = bench.sweep(a.models, a.backend, a.threads or [None], runs=runs, seconds=a.seconds, warmup=a.warmup,
                         input=a.input, labels=a.labels, interpreter=a.interpreter, isolate=not a.in_process,
                         progress=lambda m: print(m, file=sys.stderr, flush=True), zones=a.zone)
    if a.save:
        Path(a.save).write_text(json.dumps(result, indent=2) + "\n")
    bench_outputs(a, [result])
    _zone_lines(result)
    return 0 if any(r.get("status") == "ok" for r in result["results"]) else 1


def _zone_lines(result: dict) -> None:
    """With --zone: per row, each zone's p50 from crop to labels, and all zones of a frame."""
    for r in result["results"]:
        z = r.get("zones_ms")
        if z:
            parts = [f"{n} {v['total']:.2f} ms (crop+resize {v['crop_resize']:.2f}, infer {v['infer']:.2f})"
                     for n, v in z.items() if n != "all"]
            print(f"bench: zones of {r.get('end_to_end_image')}, {Path(r['model']).name} on {r['backend']}, "
                  f"{r.get('threads') or 'all'} threads: {'; '.join(parts)}; all zones {z['all']['total']:.2f} ms a frame",
                  file=sys.stderr)


def cmd_bench_compare(a: argparse.Namespace) -> int:
    from edge_runtime.bench import measure as bench

    bench_outputs(a, bench.load_results(a.files))
    return 0


def bench_outputs(a: argparse.Namespace, results: list) -> None:
    """The table on stdout (--json: one JSON line per result row instead), the machines on stderr,
    and the Markdown and plot files where asked."""
    from edge_runtime.bench import measure as bench

    for r in results:
        for line in bench.machine_lines(r):
            print(line, file=sys.stderr)
    if a.json:
        for r in results:
            for row in r["results"]:
                print(json.dumps({"device": bench.device_name(r), **row}), flush=True)
    else:
        print(bench.table(results))
    if a.markdown:
        Path(a.markdown).write_text(bench.markdown(results))
    if a.plot:
        bench.plot(results, a.plot)


BENCH_DESCRIPTION = (
    "Benchmark models (bundles or .tflite) on this machine: interpreter creation, first inference, invoke "
    "latency (min, mean, std, p50, p90, p99, max), throughput, memory, and the end-to-end path on a real image "
    "stage by stage; with the CPU governor and, on a Pi, the temperature and throttling before and after. Each "
    "configuration runs in its own process; one that cannot run gets a row saying why. --save keeps the results; "
    "`edgecls bench compare A.json B.json ...` merges saved results from several devices into one table.")


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="latency, memory and the path stage by stage, per model x backend x threads "
                       "(bench compare: merge saved results)", description=BENCH_DESCRIPTION)
    p.add_argument("models", nargs="+", metavar="MODEL_OR_BUNDLE", help="bundles or .tflite files")
    p.add_argument("--labels", metavar="FILE", help="label file for bare .tflite models")
    p.add_argument("--backend", type=_backends, default=["cpu"], metavar="B[,B...]",
                   help=f"backends to measure, of {', '.join(BENCH_BACKENDS)} (default: cpu; imx500: the AI Camera's "
                        "inference rate and DNN time from its metadata)")
    p.add_argument("--threads", type=thread_list, default=None, metavar="N[,N...]",
                   help="CPU thread counts to sweep (default: the machine's cores)")
    p.add_argument("--runs", type=positive_int, default=None, help="counted invocations (default 50)")
    p.add_argument("--seconds", type=positive_float, default=None, help="invoke for this long instead of --runs")
    p.add_argument("--warmup", type=nonneg_int, default=5, help="uncounted invocations first (default 5)")
    p.add_argument("--input", default="random", metavar="random|IMAGE|DIR",
                   help="what to feed: random pixels, one image, or a directory of images (default random; the "
                        "end-to-end path uses the image, else the bundle's first golden photo)")
    p.add_argument("--image", dest="input", help=argparse.SUPPRESS)  # the earlier name of --input IMAGE
    p.add_argument("--interpreter", metavar="PKG", default=None, help="force an interpreter package")
    p.add_argument("--save", metavar="OUT.json", default=None, help="write the whole result (for bench compare)")
    p.add_argument("--in-process", action="store_true", help="run every configuration in this process")
    p.add_argument("--zone", action="append", default=[], metavar="NAME=X,Y,W,H",
                   help="also time each zone of the end-to-end image, cropped and classified on its own, as `edgecls "
                        "camera --zone` does (repeatable; pixels, or fractions when every value is <= 1)")
    _bench_output_args(p)
    p.set_defaults(func=cmd_bench)


def _bench_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON object per result row on stdout, not the table")
    p.add_argument("--markdown", metavar="OUT.md", default=None, help="write the table as Markdown")
    p.add_argument("--plot", metavar="OUT.png", default=None,
                   help="bar chart of p50 latency (needs matplotlib: pip install 'edgecls[plot]')")


def compare_parser() -> argparse.ArgumentParser:
    """``edgecls bench compare``: its own parser, because ``bench`` takes model paths."""
    p = SuggestingParser(prog="edgecls bench compare", description="Merge results saved with `edgecls "
                                "bench --save` on several devices into one table (a model named 'compare' is "
                                "./compare).")
    p.add_argument("files", nargs="+", metavar="RESULT.json", help="files written by edgecls bench --save")
    _bench_output_args(p)
    p.set_defaults(func=cmd_bench_compare)
    return p
