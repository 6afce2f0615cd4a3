"""The ``edgecls`` command: one subcommand per job. Only this layer parses arguments and prints."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Callable, Iterator, Sequence

from edge_runtime._version import __version__
from edge_runtime.bundle.classifier import BACKENDS
from edge_runtime.cli.args import model_args, positive_int, runtime_args, score
from edge_runtime.cli.bench import add_bench
from edge_runtime.cli.camera import add_camera
from edge_runtime.cli.collect import add_collect
from edge_runtime.cli.review import add_review
from edge_runtime.cli.teach import add_teach
from edge_runtime.errors import BundleError, EdgeclsError
from edge_runtime.live import imx500
from edge_runtime.model.preprocess import CROP_MODES, IMAGE_SUFFIXES, RESIZE_METHODS, iter_images

COMMANDS_GROUP = "edgecls.commands"


def cmd_classify(a: argparse.Namespace) -> int:
    from edge_runtime.bundle.classifier import Classifier

    clf = Classifier(a.model, labels=a.labels, backend=a.backend, threads=a.threads, interpreter=a.interpreter,
                     resize=a.resize, crop=a.crop)
    d = clf.describe()
    print(f"edgecls: {d['model']} on {d['backend']} ({d['interpreter']} {d['interpreter_version']}, "
          f"{d['threads']} threads), resize {d['resize']}, input {d['input']['conversion']}"
          + (f"; {'; '.join(d['notes'])}" if a.backend == "auto" else ""), file=sys.stderr)
    failed = seen = 0
    for path in iter_images(a.images):
        seen += 1
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
    if not seen:
        raise EdgeclsError(f"{', '.join(a.images)}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))}); "
                           "pass image files or folders that hold some")
    if failed:
        print(f"edgecls: {failed} image(s) could not be classified", file=sys.stderr)
    return 1 if failed else 0


def cmd_doctor(a: argparse.Namespace) -> int:
    from edge_runtime.cli.doctor import report

    text, code = report(a.json)
    print(text)
    return code


def cmd_verify(a: argparse.Namespace) -> int:
    from edge_runtime.bundle.verify import format_report, verify

    if a.backend == "imx500":
        _verify_imx500(a.bundle)  # says what it could check and what it could not

    rep = verify(a.bundle, backend=a.backend, interpreter=a.interpreter, threads=a.threads, fault=a.simulate_fault)
    print(json.dumps(rep.to_dict()) if a.json else format_report(rep))
    if not rep.ok:
        print(f"edgecls: error: {a.bundle}: golden photos do not match on this machine; "
              + ("; ".join(rep.causes()) or "see the table"), file=sys.stderr)
        return 1
    return 0


def _verify_imx500(bundle: str) -> None:
    """``edgecls verify BUNDLE --backend imx500``: what can be checked here, and what cannot."""
    net = imx500.network(bundle)  # the bundle's imx500/ part, checksummed, and its network.rpk
    raise BundleError(f"{bundle}: the IMX500 network ({net.rpk.name}, {len(net.labels)} classes) is present and its "
                      "files match edgecls.json, but its outputs were not checked: edgecls does not feed the golden "
                      "photos to the sensor (picamera2's tensor injection); `edgecls camera --backend imx500` "
                      "shows what it classifies, `edgecls verify --backend cpu` checks the CPU model")


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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=argparse.ArgumentParser)
    sub.required = True
    for add in (_add_classify, add_bench, _add_verify, add_camera, _add_doctor, _add_inspect, add_collect,
                add_review, add_teach):
        add(sub)
    for register in _plugin_commands():
        register(sub)
    parser.commands = {a.dest: a.help or "" for a in sub._get_subactions()}
    return parser


def _add_classify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("classify", help="top-k classes of images", description="Classify images with a bundle or "
                       "a bare .tflite. Directories are walked for image files.")
    model_args(p)
    p.add_argument("images", nargs="+", metavar="PATH", help="image files or directories")
    p.add_argument("--top-k", type=positive_int, default=5, metavar="K", help="classes per image (default 5)")
    p.add_argument("--threshold", type=score, default=0.0, metavar="T", help="drop classes scoring below T (0..1)")
    p.add_argument("--resize", choices=RESIZE_METHODS, default=None,
                   help="resize method (default: the bundle's, else bilinear = TensorFlow 2's tf.image.resize; "
                        "Coral's published models were tested with bilinear-legacy)")
    p.add_argument("--crop", choices=CROP_MODES, default=None, help="crop before resizing (default: the bundle's, else none)")
    p.add_argument("--json", action="store_true", help="one JSON object per image per line")
    p.set_defaults(func=cmd_classify)


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="rerun a bundle's golden photos here and compare",
                       description="Rerun the bundle's golden photos through the whole device path (decode, resize, "
                       "input conversion, invoke) and compare with the outputs recorded when it was converted: "
                       "bit-identical int8 outputs on the cpu backend, the same top-1 and scores within 0.2 "
                       "elsewhere. Exits 1 on any mismatch, naming the likely cause.")
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory or .tar.gz")
    runtime_args(p, (*BACKENDS, "imx500"))
    p.add_argument("--json", action="store_true", help="the report as one JSON line")
    p.add_argument("--simulate-fault", choices=("swap-rb",), default=None, help=argparse.SUPPRESS)  # tests only
    p.set_defaults(func=cmd_verify)


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    def cmd(a: argparse.Namespace) -> int:
        from edge_runtime.bundle.inspect import format_report, inspect

        r = inspect(a.model, a.interpreter)
        print(json.dumps(r) if a.json else format_report(r), flush=True)
        if not r["runs"]:
            print(f"edgecls: error: {a.model}: edgecls cannot run this model: {r.get('reason')}", file=sys.stderr)
        return 0 if r["runs"] else 1

    p = sub.add_parser("inspect", help="what a model is and whether edgecls runs it",
                       description="Inputs and outputs (shape, type, quantization), ops by type, TFLite metadata "
                       "(labels, normalization), Edge TPU mapping (compiled, or predicted), size, what kind of model "
                       "it is and whether edgecls can run it here (loaded and invoked once). Exits 1 when it cannot.")
    p.add_argument("model", metavar="MODEL_OR_BUNDLE", help="a .tflite, or a bundle directory or .tar.gz")
    p.add_argument("--interpreter", metavar="PKG", default=None, help="force an interpreter package")
    p.add_argument("--json", action="store_true", help="the report as one JSON line")
    p.set_defaults(func=cmd)


def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="what this machine can run, and what to do about each gap")
    p.add_argument("--json", action="store_true", help="the checks as one JSON line")
    p.set_defaults(func=cmd_doctor)


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
        except ModuleNotFoundError as e:
            if e.name == ep.value.split(":")[0].split(".")[0]:
                continue  # a package of the distribution that this install left out (a Pi has no train/)
            found.append(_broken_command(ep.name, e))
        except ImportError as e:
            found.append(_broken_command(ep.name, e))
    return found


def _broken_command(name: str, error: ImportError) -> Callable[[argparse._SubParsersAction], None]:
    """A workstation command whose module is there but does not import: it stays listed and says why."""
    def fail(a: argparse.Namespace) -> int:
        raise EdgeclsError(f"the {name} command cannot load ({error}); reinstall edgecls (pip install -e '.[train]')")

    def register(sub: argparse._SubParsersAction) -> None:
        p = sub.add_parser(name, help=f"(cannot load: {error})", add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(func=fail)
    return register


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
        from edge_runtime.cli.bench import compare_parser

        args = compare_parser().parse_args(argv[2:])
    else:
        args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    from edge_runtime.system.signals import Terminated, stop_like_ctrl_c

    stop_like_ctrl_c()  # SIGTERM/SIGHUP unwind like Ctrl-C: temporary directories are removed
    try:
        with _stdout_is_ours():
            return func(args)
    except Terminated as e:
        print(f"edgecls: stopped by {e}", file=sys.stderr)
        return 128 + e.signum
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
