"""The ``edgecls`` command: one subcommand per job. Only this layer parses arguments and prints."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

from . import __version__
from .argtypes import nonneg_float, nonneg_int, positive_float, positive_int, score, thread_list, threads
from .classifier import BACKENDS
from .errors import EdgeclsError
from .preprocess import CROP_MODES, RESIZE_METHODS, iter_images

COMMANDS_GROUP = "edgecls.commands"


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_OR_BUNDLE", help="bundle directory or .tar.gz, or a bare .tflite")
    p.add_argument("--labels", metavar="FILE", help="label file for a bare .tflite (one label a line, or 'N label')")
    _runtime_args(p)


def _runtime_args(p: argparse.ArgumentParser) -> None:
    """--backend, --threads, --interpreter: how a model runs here."""
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto takes the first that starts of edgetpu, gpu, cpu (default: auto)")
    p.add_argument("--threads", type=threads, default=None, help="CPU threads (default: the machine's cores)")
    p.add_argument("--interpreter", metavar="PKG", default=None,
                   help="force ai_edge_litert, tflite_runtime or tensorflow (also $EDGECLS_INTERPRETER)")


def cmd_classify(a: argparse.Namespace) -> int:
    from .classifier import Classifier

    clf = Classifier(a.model, labels=a.labels, backend=a.backend, threads=a.threads, interpreter=a.interpreter,
                     resize=a.resize, crop=a.crop)
    d = clf.describe()
    print(f"edgecls: {d['model']} on {d['backend']} ({d['interpreter']} {d['interpreter_version']}, "
          f"{d['threads']} threads), resize {d['resize']}, input {d['input']['conversion']}"
          + (f"; {'; '.join(d['notes'])}" if a.backend == "auto" else ""), file=sys.stderr)
    failed = 0
    for path in iter_images(a.images):
        try:
            r = clf.classify(path, top=a.top_k, threshold=a.threshold)
        except EdgeclsError as e:
            failed += 1
            if a.json:
                print(json.dumps({"image": path, "error": str(e)}), flush=True)
            else:
                print(f"{path}: error: {e}", flush=True)
            continue
        if a.json:
            print(json.dumps(r.to_dict(clf)), flush=True)
        else:
            top = ", ".join(f"{c.label} ({c.score:.3f})" for c in r.classes) or "(no class above the threshold)"
            total = sum(r.latency_ms.values())
            print(f"{path}: {top}  [{total:.1f} ms]", flush=True)
    if failed:
        print(f"edgecls: {failed} image(s) could not be classified", file=sys.stderr)
    return 1 if failed else 0


def cmd_camera(a: argparse.Namespace) -> int:
    from . import camera, mining, sources, webview
    from .classifier import Classifier

    import signal

    def _stop(*_: object) -> None:  # systemd stops a service with SIGTERM: end like Ctrl-C, with the summary
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    clf = Classifier(a.model, labels=a.labels, backend=a.backend, threads=a.threads, interpreter=a.interpreter)
    source, note = sources.open_source(a.source, (clf.width, clf.height), fps=a.fps, isp_resize=a.isp_resize == "on",
                                       resize=clf.resize_method, crop=clf.crop)
    source.open()
    path = getattr(source, "path", "")  # the Pi camera: ISP or software resize, stride, colour space
    print(f"edgecls: {source.name} -> {clf.model_path} on {clf.backend} ({clf.threads} threads)"
          + (f"; {note}" if note else "") + (f"; {path}" if path else ""), file=sys.stderr)
    view = None
    if a.serve:
        host, port = webview.parse_address(a.serve)
        if not webview.is_loopback(host):
            if not a.public:
                raise ValueError(f"--serve {a.serve} would be reachable from other machines; add --public to say so "
                                 "(or serve on 127.0.0.1 and use an SSH tunnel)")
            print(f"edgecls: warning: the web view on {host}:{port} is reachable by anyone on the network, "
                  "without a password", file=sys.stderr)
        view = webview.View()
        server = webview.serve(view, host, port)
        h, p = server.server_address[:2]
        print(f"edgecls: web view on http://{h}:{p}/ (JSON: /status.json)", file=sys.stderr, flush=True)

    def emit(d: dict) -> None:
        if a.json:
            print(json.dumps(d), flush=True)
        else:
            top = ", ".join(f"{c['label']} ({c['score']:.3f})" for c in d["classes"]) or "(below the threshold)"
            print(f"frame {d['frame']}: {top}  [{d['latency_ms']['invoke']:.1f} ms]", flush=True)

    miner = mining.from_args(a, lambda m: print(f"edgecls: {m}", file=sys.stderr, flush=True), source.live)
    s = camera.run(clf, source, emit, top=a.top_k, threshold=a.threshold, on_change=a.on_change, smooth=a.smooth,
                   max_frames=a.max_frames, view=view, miner=miner)
    if miner is not None:
        print(f"edgecls: {miner.close().describe(a.save_uncertain)}", file=sys.stderr, flush=True)
    if a.json:
        print(json.dumps(s.to_dict()), flush=True)
    if view is not None and s.ended == "end of input":
        print("edgecls: the input ended; the web view keeps the last frame - Ctrl-C to stop", file=sys.stderr, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    lat = ", ".join(f"{k} {v:.1f}" for k, v in s.latency_ms.items())
    print(f"edgecls: {s.classified} frames classified of {s.captured} captured, {s.dropped} dropped, "
          f"{s.fps:.1f} FPS over {s.seconds:.1f} s ({s.ended}); mean ms: {lat}", file=sys.stderr)
    if s.failed:
        print(f"edgecls: error: {s.ended}", file=sys.stderr)
        return 1
    return 0


def cmd_doctor(a: argparse.Namespace) -> int:
    from .doctor import report

    text, code = report(a.json)
    print(text)
    return code


def _backends(text: str) -> list[str]:
    out = [b.strip() for b in text.split(",") if b.strip()]
    bad = [b for b in out if b not in BACKENDS]
    if not out or bad:
        raise argparse.ArgumentTypeError(f"unknown backend {', '.join(bad) or text!r}; valid: {', '.join(BACKENDS)}")
    return out


def cmd_bench(a: argparse.Namespace) -> int:
    from . import bench

    if a.runs is not None and a.seconds is not None:
        raise ValueError("give --runs or --seconds, not both")
    runs = a.runs if a.runs is not None or a.seconds is not None else 50
    result = bench.sweep(a.models, a.backend, a.threads or [None], runs=runs, seconds=a.seconds, warmup=a.warmup,
                         input=a.input, labels=a.labels, interpreter=a.interpreter, isolate=not a.in_process,
                         progress=lambda m: print(m, file=sys.stderr, flush=True))
    if a.save:
        Path(a.save).write_text(json.dumps(result, indent=2) + "\n")
    bench_outputs(a, [result])
    return 0 if any(r.get("status") == "ok" for r in result["results"]) else 1


def cmd_bench_compare(a: argparse.Namespace) -> int:
    from . import bench

    bench_outputs(a, bench.load_results(a.files))
    return 0


def bench_outputs(a: argparse.Namespace, results: list) -> None:
    """The table on stdout (--json: one JSON line per result row instead), the machines on stderr,
    and the Markdown and plot files where asked."""
    from . import bench

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


def cmd_verify(a: argparse.Namespace) -> int:
    from .verify import format_report, verify

    rep = verify(a.bundle, backend=a.backend, interpreter=a.interpreter, threads=a.threads, fault=a.simulate_fault)
    print(json.dumps(rep.to_dict()) if a.json else format_report(rep))
    if not rep.ok:
        print(f"edgecls: error: {a.bundle}: golden photos do not match on this machine; "
              + ("; ".join(rep.causes()) or "see the table"), file=sys.stderr)
        return 1
    return 0


# `edgecls --help`: the commands by where they run, in the order of the loop, with an example each.
COMMAND_GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("on the device (a Raspberry Pi, or a desktop for testing)", (
        ("collect", "edgecls collect photos/ --serve 8000 --labels cat,empty"),
        ("camera", "edgecls camera bundles/cat --serve 8000 --on-change"),
        ("classify", "edgecls classify bundles/cat photos/"),
        ("verify", "edgecls verify bundles/cat"),
        ("bench", "edgecls bench bundles/cat --threads 1,4 --plot bench.png"),
        ("inspect", "edgecls inspect model.tflite"),
        ("doctor", "edgecls doctor"),
    )),
    ("on the workstation (pip install 'edgecls[train]')", (
        ("train", "edgecls train photos/ --out runs/cat"),
        ("convert", "edgecls convert runs/cat --out bundles/cat --edgetpu"),
        ("adopt", "edgecls adopt model.tflite --photos photos/ --out bundles/theirs"),
        ("deploy", "edgecls deploy bundles/cat pi@raspberrypi.local --service"),
        ("pull", "edgecls pull pi@raspberrypi.local:mined --into photos/"),
        ("review", "edgecls review photos/ --serve 8000"),
        ("demo", "edgecls demo"),
    )),
)
LOOP = "collect -> train -> convert -> deploy -> camera (mining uncertain frames) -> pull -> review -> train again"


class _TopParser(argparse.ArgumentParser):
    """The top-level parser, whose help lists the commands grouped, each with an example."""

    commands: dict[str, str] = {}  # name -> one-line help, filled by build_parser

    def format_help(self) -> str:
        out = [self.format_usage(), "Image classifiers on a Raspberry Pi, from photos to a camera that acts.",
               f"The loop: {LOOP}.", ""]
        listed = set()
        for title, entries in COMMAND_GROUPS:
            out.append(f"commands {title}:")
            for name, example in entries:
                if name in self.commands:
                    listed.add(name)
                    out.append(f"  {name:<9} {self.commands[name]}")
                    out.append(f"  {'':<9}   e.g. {example}")
            out.append("")
        others = [n for n in self.commands if n not in listed]
        if others:
            out.append("other commands:")
            out += [f"  {n:<9} {self.commands[n]}" for n in others] + [""]
        out.append("options:\n  -h, --help  show this help\n  --version   the edgecls version")
        out.append("\n`edgecls COMMAND --help` explains a command.")
        return "\n".join(out) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = _TopParser(prog="edgecls", description="Image classifiers on a Raspberry Pi.")
    parser.add_argument("--version", action="version", version=f"edgecls {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for add in (_add_classify, _add_bench, _add_verify, _add_camera, _add_doctor, _add_collect, _add_review):
        add(sub)
    for register in _plugin_commands():
        register(sub)
    parser.commands = {a.dest: a.help or "" for a in sub._get_subactions()}
    return parser


def _add_classify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="top-k classes of images", description="Classify images with a bundle or "
                       "a bare .tflite. Directories are walked for image files.")
    _model_args(p)
    p.add_argument("images", nargs="+", metavar="PATH", help="image files or directories")
    p.add_argument("--top-k", type=positive_int, default=5, metavar="K", help="classes per image (default 5)")
    p.add_argument("--threshold", type=score, default=0.0, metavar="T", help="drop classes scoring below T (0..1)")
    p.add_argument("--resize", choices=RESIZE_METHODS, default=None,
                   help="resize method (default: the bundle's, else bilinear = TensorFlow 2's tf.image.resize; "
                        "Coral's published models were tested with bilinear-legacy)")
    p.add_argument("--crop", choices=CROP_MODES, default=None, help="crop before resizing (default: the bundle's, else none)")
    p.add_argument("--json", action="store_true", help="one JSON object per image per line")
    p.set_defaults(func=cmd_classify)


BENCH_DESCRIPTION = (
    "Benchmark models (bundles or .tflite) on this machine: interpreter creation, first inference, invoke "
    "latency (min, mean, std, p50, p90, p99, max), throughput, memory, and the end-to-end path on a real image "
    "stage by stage; with the CPU governor and, on a Pi, the temperature and throttling before and after. Each "
    "configuration runs in its own process; one that cannot run gets a row saying why. --save keeps the results; "
    "`edgecls bench compare A.json B.json ...` merges saved results from several devices into one table.")


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="latency, memory and the path stage by stage, per model x backend x threads "
                       "(bench compare: merge saved results)", description=BENCH_DESCRIPTION)
    p.add_argument("models", nargs="+", metavar="MODEL_OR_BUNDLE", help="bundles or .tflite files")
    p.add_argument("--labels", metavar="FILE", help="label file for bare .tflite models")
    p.add_argument("--backend", type=_backends, default=["cpu"], metavar="B[,B...]",
                   help=f"backends to measure, of {', '.join(BACKENDS)} (default: cpu)")
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
    _bench_output_args(p)
    p.set_defaults(func=cmd_bench)


def _bench_output_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON object per result row on stdout, not the table")
    p.add_argument("--markdown", metavar="OUT.md", default=None, help="write the table as Markdown")
    p.add_argument("--plot", metavar="OUT.png", default=None,
                   help="bar chart of p50 latency (needs matplotlib: pip install 'edgecls[plot]')")


def _bench_compare_parser() -> argparse.ArgumentParser:
    """``edgecls bench compare``: its own parser, because ``bench`` takes model paths."""
    p = argparse.ArgumentParser(prog="edgecls bench compare", description="Merge results saved with `edgecls "
                                "bench --save` on several devices into one table (a model named 'compare' is "
                                "./compare).")
    p.add_argument("files", nargs="+", metavar="RESULT.json", help="files written by edgecls bench --save")
    _bench_output_args(p)
    p.set_defaults(func=cmd_bench_compare)
    return p


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="rerun a bundle's golden photos here and compare",
                       description="Rerun the bundle's golden photos through the whole device path (decode, resize, "
                       "input conversion, invoke) and compare with the outputs recorded when it was converted: "
                       "bit-identical int8 outputs on the cpu backend, the same top-1 and scores within 0.1 "
                       "elsewhere. Exits 1 on any mismatch, naming the likely cause.")
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory or .tar.gz")
    _runtime_args(p)
    p.add_argument("--json", action="store_true", help="the report as one JSON line")
    p.add_argument("--simulate-fault", choices=("swap-rb",), default=None, help=argparse.SUPPRESS)  # tests only
    p.set_defaults(func=cmd_verify)


def _add_camera(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("camera", help="classify live frames: Pi camera, webcam, video file or images; --serve for a web view",
                       description="Classify frames as fast as the model allows: capture runs in its own thread and "
                       "inference always takes the newest frame (a camera's stale frames are dropped and counted). "
                       "One line per classified frame (--json: {t, frame, classes, latency_ms}); Ctrl-C ends with a "
                       "summary.")
    _model_args(p)
    p.add_argument("--source", default="auto",
                   help="auto (the Pi camera, else the first webcam), picamera2, opencv:N, /dev/videoN, a video file, "
                        "or a folder or glob of images (default auto)")
    p.add_argument("--top-k", type=positive_int, default=3, metavar="K", help="classes per frame (default 3)")
    p.add_argument("--threshold", type=score, default=0.0, metavar="T", help="report only classes scoring at least T")
    p.add_argument("--on-change", action="store_true", help="print a line only when the top label changes")
    p.add_argument("--smooth", type=positive_int, default=1, metavar="K", help="average the scores of the last K frames")
    p.add_argument("--max-frames", type=positive_int, default=None, metavar="N", help="stop after N classified frames")
    p.add_argument("--fps", type=nonneg_float, default=0.0, help="pace a folder of images at this rate (default 0: no pacing)")
    p.add_argument("--isp-resize", choices=("on", "off"), default="on",
                   help="Pi camera: on = the ISP delivers the model's size (no CPU resize, but not TensorFlow's "
                        "bilinear); off = a larger frame resized in software by the bundle's method, as in training "
                        "(default on)")
    p.add_argument("--serve", metavar="[HOST:]PORT", help="web view with the live picture and the top-k "
                   "(default host 127.0.0.1)")
    p.add_argument("--public", action="store_true", help="allow --serve on an address other machines can reach")
    p.add_argument("--json", action="store_true", help="one JSON object per frame, and a summary at the end")
    from . import mining

    mining.add_options(p)
    p.set_defaults(func=cmd_camera)


def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="what this machine can run, and what to do about each gap")
    p.add_argument("--json", action="store_true", help="the checks as one JSON line")
    p.set_defaults(func=cmd_doctor)


def _add_collect(sub: argparse._SubParsersAction) -> None:
    """``edgecls collect`` (edge_runtime/collect.py)."""
    p = sub.add_parser("collect", help="take photos with the camera into DATASET/<class>/: a web page with a button "
                       "per class (--serve), or --label CLASS --count N", description="Photos from the camera into "
                       "DATASET/<class>/ as JPEG (the full display picture), the layout `edgecls train` reads: written "
                       "atomically, never overwriting, named by time. --serve: a page with the live picture, a button "
                       "per class (keys 1-9; hold for a burst), counts, and the last photos with undo.")
    p.add_argument("dataset", metavar="DATASET", help="the dataset folder (made if missing)")
    p.add_argument("--source", default="auto", help="auto, picamera2, opencv:N, /dev/videoN, a video file or a folder "
                   "of images (default auto)")
    p.add_argument("--serve", metavar="[HOST:]PORT", help="the collect page (default host 127.0.0.1)")
    p.add_argument("--public", action="store_true", help="allow --serve on an address other machines can reach")
    p.add_argument("--labels", metavar="A,B", help="classes to show as buttons (besides DATASET's folders)")
    p.add_argument("--label", metavar="CLASS", help="without --serve: the class of the photos to take")
    p.add_argument("--count", type=positive_int, default=None, metavar="N", help="without --serve: photos to take "
                   "(default 50)")
    p.add_argument("--every", type=nonneg_float, default=0.5, metavar="S", help="without --serve: seconds between "
                   "photos (a file's frames are taken in order; default 0.5)")
    p.add_argument("--fps", type=nonneg_float, default=0.0, help="pace a folder of images at this rate")
    p.add_argument("--width", type=positive_int, default=224, help=argparse.SUPPRESS)  # the Pi camera's lores size
    p.add_argument("--height", type=positive_int, default=224, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_collect)


def _cmd_collect(a: argparse.Namespace) -> int:
    from .collect import command

    return command(a)


def _add_review(sub: argparse._SubParsersAction) -> None:
    """``edgecls review`` (edge_runtime/review.py)."""
    p = sub.add_parser("review", help="sort the frames in DATASET/_review/ into classes on a web page",
                       description="A page showing the frames `edgecls pull` put in DATASET/_review/<predicted>/, "
                       "with the predicted label and score; a button moves each into a class folder (or a new "
                       "one), or discards it (to DATASET/_discarded/). Moves are atomic and never overwrite.")
    p.add_argument("dataset", metavar="DATASET", help="the dataset folder")
    p.add_argument("--serve", metavar="[HOST:]PORT", required=True, help="the review page (default host 127.0.0.1)")
    p.add_argument("--public", action="store_true", help="allow --serve on an address other machines can reach")
    p.set_defaults(func=_cmd_review)


def _cmd_review(a: argparse.Namespace) -> int:
    from .review import command

    return command(a)


def _plugin_commands() -> list[Callable[[argparse._SubParsersAction], None]]:
    """The workstation subcommands (train, convert, demo, deploy) register themselves through the
    ``edgecls.commands`` entry point, so this package never imports them. Their heavy
    dependencies load only when they run, and say which extra is missing."""
    from importlib.metadata import entry_points

    try:
        eps = entry_points(group=COMMANDS_GROUP)
    except TypeError:  # Python 3.9
        eps = entry_points().get(COMMANDS_GROUP, [])  # type: ignore[attr-defined]
    found = []
    for ep in sorted(eps, key=lambda e: e.name):
        try:
            found.append(ep.load())
        except ImportError:  # a package of the distribution that this install left out
            continue
    return found


@contextlib.contextmanager
def _stdout_is_ours() -> Iterator[None]:
    """Native libraries (LiteRT's GPU accelerator) print log lines on file descriptor 1; send
    them to stderr so that stdout carries only edgecls's own output (--json stays parseable)."""
    try:
        sys.stdout.flush()
        real = os.dup(1)
    except (OSError, ValueError, AttributeError):
        yield
        return
    saved = sys.stdout
    os.dup2(2, 1)
    sys.stdout = open(real, "w", buffering=1, encoding=saved.encoding or "utf-8", closefd=False)
    try:
        yield
    finally:
        ours, sys.stdout = sys.stdout, saved
        try:
            ours.flush()
        except BrokenPipeError:  # `edgecls ... | head`: the reader has gone; what is left goes nowhere
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, real)
            os.close(null)
            ours.flush()
        os.dup2(real, 1)
        os.close(real)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["bench", "compare"]:
        args = _bench_compare_parser().parse_args(argv[2:])
    else:
        args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        with _stdout_is_ours():
            return func(args)
    except EdgeclsError as e:
        print(f"edgecls: error: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # a bad option value from the library (validated there)
        print(f"edgecls: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgecls: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141  # like a shell command killed by SIGPIPE, without a traceback


if __name__ == "__main__":
    sys.exit(main())
