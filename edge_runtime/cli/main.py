"""The ``edgecls`` command: one subcommand per job. Only this layer parses arguments and prints."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys
import warnings
from typing import Callable, Iterator, Sequence

from edge_runtime._version import __version__
from edge_runtime.cli.args import SuggestingParser, finish_help, model_args, positive_int, runtime_args, score
from edge_runtime.errors import BundleError, EdgeclsError

# Nothing heavy is imported here: `edgecls --help` reads the tables below, and `edgecls COMMAND`
# imports only COMMAND's module (numpy, Pillow and the interpreter load when a command needs them).

COMMANDS_GROUP = "edgecls.commands"


def cmd_classify(a: argparse.Namespace) -> int:
    from edge_runtime.bundle.classifier import Classifier
    from edge_runtime.model.preprocess import IMAGE_SUFFIXES, iter_images

    clf = Classifier(a.model, labels=a.labels, backend=a.backend, threads=a.threads, interpreter=a.interpreter,
                     resize=a.resize, crop=a.crop)
    d = clf.describe()
    notes = [n for n in d["notes"] if a.backend == "auto" or n.startswith("labels:")]
    if d["labels_from"] and d["labels_from"].startswith("the model's metadata"):
        notes.insert(0, f"labels from {d['labels_from']}")
    print(f"edgecls: {d['model']} on {d['backend']} ({d['interpreter']} {d['interpreter_version']}, "
          f"{d['threads']} threads), resize {d['resize']}, input {d['input']['conversion']}"
          + "".join(f"; {n}" for n in notes), file=sys.stderr)
    failed = seen = 0
    # The next images decode while this one runs; in order, a file that is not an image skipped.
    for path, r in clf.classify_each(iter_images(a.images), top=a.top_k, threshold=a.threshold):
        seen += 1
        if isinstance(r, EdgeclsError):
            failed += 1
            if a.json:
                print(json.dumps({"image": path, "error": str(r)}), flush=True)
            else:  # the message names the file already
                message = str(r)
                print(f"{path}: error: {message.removeprefix(f'{path}: ')}", flush=True)
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

    text, code = report(a.json, a.need)
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
    from edge_runtime.live import imx500

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
        ("users", "edgecls users add users.txt alice --role admin"),
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
# The "examples:" at the end of `edgecls COMMAND --help` (a command that writes its own epilog keeps it).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "classify": ("edgecls classify bundles/cat photos/", "edgecls classify bundles/cat cat.jpg --top-k 3 --json",
                 "edgecls classify model.tflite --labels labels.txt photo.jpg --backend cpu"),
    "bench": ("edgecls bench bundles/cat", "edgecls bench bundles/cat --threads 1,4 --plot bench.png",
              "edgecls bench bundles/cat --backend cpu,edgetpu --save pi5.json"),
    "verify": ("edgecls verify bundles/cat", "edgecls verify bundles/cat.tar.gz --backend cpu --json"),
    "camera": ("edgecls camera bundles/cat", "edgecls camera bundles/cat --serve 8000 --on-change",
               "edgecls camera bundles/cat --mqtt mqtt://broker.local --save-uncertain mined/"),
    "doctor": ("edgecls doctor", "edgecls doctor --json", "edgecls doctor --need 'edgetpu devices' --need interpreter"),
    "inspect": ("edgecls inspect model.tflite", "edgecls inspect bundles/cat --json"),
    "collect": ("edgecls collect photos/ --serve 8000 --labels cat,empty",
                "edgecls collect photos/ --label cat --count 20 --every 1"),
    "review": ("edgecls review photos/ --serve 8000",),
    "train": ("edgecls train photos/ --out runs/cat", "edgecls train photos/ --out runs/cat --size 160 --epochs 20",
              "edgecls train photos/ --out runs/cat --resume"),
    "convert": ("edgecls convert runs/cat --out bundles/cat", "edgecls convert runs/cat --out bundles/cat --edgetpu --tar"),
    "adopt": ("edgecls adopt model.tflite --photos photos/ --out bundles/theirs",
              "edgecls adopt model.tflite --photos photos/ --out bundles/theirs --labels labels.txt"),
    "demo": ("edgecls demo", "edgecls demo --out /tmp/edgecls-demo --epochs 5"),
    "users": ("edgecls users add users.txt alice --role admin", "edgecls users list users.txt",
              "edgecls users add users.txt kiosk --role viewer --password-stdin",
              "edgecls users remove users.txt kiosk"),
    "teach": ("edgecls teach bundles/cat photos/ --out bundles/cat-2",
              "edgecls teach bundles/cat photos/ --out bundles/doors --only --json",
              "edgecls teach photos/ --into edgecls"),
    "users add": ("edgecls users add users.txt alice --role admin",
                  "edgecls users add users.txt kitchen-tablet --role viewer",
                  "edgecls users add users.txt kiosk --role viewer --password-stdin"),
    "users list": ("edgecls users list users.txt",),
    "users remove": ("edgecls users remove users.txt alice",),
    "bench compare": ("edgecls bench compare pi4.json pi5.json", "edgecls bench compare *.json --markdown table.md"),
}


def examples(name: str) -> tuple[str, ...]:
    """The examples of ``edgecls NAME --help``: the table above, else the top-level help's one."""
    if name in EXAMPLES:
        return EXAMPLES[name]
    return tuple(e for _, entries in COMMAND_GROUPS for n, e in entries if n == name)


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
        out.append("\n`edgecls COMMAND --help` (or `edgecls help COMMAND`) explains a command.")
        return "\n".join(out) + "\n"


def build_parser(command: str | None = "*") -> argparse.ArgumentParser:
    """The ``edgecls`` parser. ``command`` "*": every command with all its options (tests walk it);
    a name: that command's real parser, the others listed by their one-line help only (what
    ``main`` builds, so that a command imports only its own module); None: only the list (the
    top-level help)."""
    parser = _TopParser(prog="edgecls", description="Image classifiers on a Raspberry Pi.")
    parser.add_argument("--version", action="version", version=f"edgecls {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=SuggestingParser)
    sub.required = True
    everything = command == "*"
    for name, (help_line, add) in DEVICE_COMMANDS.items():
        if everything or name == command:
            add(sub)
        else:  # listed by its help line; its module is not imported
            sub.add_parser(name, help=help_line, add_help=False)
    real = {command} & set(sub.choices) if not everything else set(sub.choices)
    before = set(sub.choices)
    plugins = _plugins_for(command)
    if plugins != set():
        for register in _plugin_commands(plugins):
            register(sub)
    real |= set(sub.choices) - before
    for name, help_line in listed_commands().items():
        if name not in sub.choices:
            sub.add_parser(name, help=help_line, add_help=False)
    parser.commands = {a.dest: a.help or "" for a in sub._get_subactions()}
    for name in real:
        finish_help(sub.choices[name], examples(name))
        for nested in sub.choices[name]._actions:  # a command with actions of its own: `edgecls users add`
            if isinstance(nested, argparse._SubParsersAction):
                for action, p in nested.choices.items():
                    finish_help(p, examples(f"{name} {action}"))
    return parser


def _plugins_for(command: str | None) -> set[str] | None:
    """The entry points that ``command`` needs loaded: its own, or those that extend it (None: all)."""
    if command == "*" or (command is not None and command not in DEVICE_COMMANDS
                          and command not in WORKSTATION_COMMANDS):
        return None  # everything, or a command no table names (another package's plugin?)
    if command in WORKSTATION_COMMANDS:
        return {WORKSTATION_COMMANDS[command][1]}
    return set(EXTENDED_BY.get(command or "", ()))


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from edge_runtime.cli.bench import add_bench

    add_bench(sub)


def _add_camera(sub: argparse._SubParsersAction) -> None:
    from edge_runtime.cli.camera import add_camera

    add_camera(sub)


def _add_collect(sub: argparse._SubParsersAction) -> None:
    from edge_runtime.cli.collect import add_collect

    add_collect(sub)


def _add_review(sub: argparse._SubParsersAction) -> None:
    from edge_runtime.cli.review import add_review

    add_review(sub)


def _add_teach(sub: argparse._SubParsersAction) -> None:
    from edge_runtime.cli.teach import add_teach

    add_teach(sub)


def _add_users(sub: argparse._SubParsersAction) -> None:
    from edge_runtime.cli.users import add_users

    add_users(sub)


def _add_classify(sub: argparse._SubParsersAction) -> None:
    from edge_runtime.model.preprocess import CROP_MODES, IMAGE_SUFFIXES, RESIZE_METHODS

    suffixes = ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES))
    p = sub.add_parser("classify", help=DEVICE_COMMANDS["classify"][0], description="Classify images with a bundle or "
                       f"a bare .tflite. Directories are walked for image files ({suffixes}; symlinked folders "
                       "inside them are not followed).")
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
    from edge_runtime.bundle.classifier import BACKENDS

    p = sub.add_parser("verify", help=DEVICE_COMMANDS["verify"][0],
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

    p = sub.add_parser("inspect", help=DEVICE_COMMANDS["inspect"][0],
                       description="Inputs and outputs (shape, type, quantization), ops by type, TFLite metadata "
                       "(labels, normalization), Edge TPU mapping (compiled, or predicted), size, what kind of model "
                       "it is and whether edgecls can run it here (loaded and invoked once). Exits 1 when it cannot.")
    p.add_argument("model", metavar="MODEL_OR_BUNDLE", help="a .tflite, or a bundle directory or .tar.gz")
    p.add_argument("--interpreter", metavar="PKG", default=None, help="force an interpreter package")
    p.add_argument("--json", action="store_true", help="the report as one JSON line")
    p.set_defaults(func=cmd)


def _add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help=DEVICE_COMMANDS["doctor"][0],
                       description="What this machine can run: the OS release and Python, numpy and Pillow, the "
                       "interpreter package, the Edge TPU library and devices, a Vulkan GPU, cameras (Pi camera, "
                       "webcams, the AI Camera), the CPU governor and the board; each gap with what to do about it. "
                       "Exit status 1 when no interpreter package can run a model, else 0.")
    p.add_argument("--json", action="store_true", help="the checks as one JSON line ({name, status, found, fix} each)")
    p.add_argument("--need", metavar="CHECK", action="append", default=[],
                   help="exit 1 unless this check is ok, for scripts (repeatable; the names of the report's first "
                        "column, e.g. 'edgetpu devices', gpu, 'ai camera', picamera2)")
    p.set_defaults(func=cmd_doctor)


# The device commands: one-line help (for `edgecls --help`) and the function that adds the parser.
DEVICE_COMMANDS: dict[str, tuple[str, Callable[[argparse._SubParsersAction], None]]] = {
    "classify": ("top-k classes of images", _add_classify),
    "bench": ("latency, memory and the path stage by stage, per model x backend x threads (bench compare: merge "
              "saved results)", _add_bench),
    "verify": ("rerun a bundle's golden photos here and compare", _add_verify),
    "camera": ("classify live frames: Pi camera, webcam, video file or images; --serve for a web view", _add_camera),
    "doctor": ("what this machine can run, and what to do about each gap", _add_doctor),
    "inspect": ("what a model is and whether edgecls runs it", _add_inspect),
    "collect": ("take photos with the camera into DATASET/<class>/: a web page with a button per class (--serve), "
                "or --label CLASS --count N", _add_collect),
    "review": ("sort the frames in DATASET/_review/ into classes on a web page", _add_review),
    "users": ("who may use the web pages (--serve ... --users FILE): add, list, remove", _add_users),
    "teach": ("new classes from a few photos, on the device", _add_teach),
}
# The workstation commands (entry points of the edgecls.commands group, pyproject.toml): one-line help,
# the entry point that registers each, and the package it needs (a Pi's install leaves train/ out).
# tests/test_cli_help.py holds both tables to what the registered parsers say.
WORKSTATION_COMMANDS: dict[str, tuple[str, str, str]] = {
    "adopt": ("turn a classifier made elsewhere (.tflite) into a verified bundle", "adopt", "convert"),
    "convert": ("quantize a trained model to a full-int8 bundle (workstation; needs edgecls[train])", "convert",
                "convert"),
    "demo": ("the whole path offline: train, convert, classify, verify, bench (needs edgecls[train])", "demo",
             "convert"),
    "deploy": ("send a bundle to Raspberry Pis over SSH: verified, atomic, reversible", "deploy", "deploy"),
    "pull": ("bring collected photos and mined frames home from devices, each once", "deploy", "deploy"),
    "train": ("train a MobileNet on a folder of photos (workstation; needs edgecls[train])", "train", "train"),
}

# Device commands that a workstation entry point adds options to (deploy gives bench --hosts).
EXTENDED_BY: dict[str, tuple[str, ...]] = {"bench": ("deploy",)}


def listed_commands() -> dict[str, str]:
    """Every command `edgecls --help` lists, with its one-line help, read without importing any
    command: the device commands, and the workstation ones whose package is installed."""
    from importlib.util import find_spec

    found = {name: help_line for name, (help_line, _) in DEVICE_COMMANDS.items()}
    for name, (help_line, _, package) in WORKSTATION_COMMANDS.items():
        if find_spec(package) is not None:
            found[name] = help_line
    return found


def _plugin_commands(names: set[str] | None = None) -> list[Callable[[argparse._SubParsersAction], None]]:
    """The workstation subcommands (train, convert, demo, deploy) register themselves through the
    ``edgecls.commands`` entry point, so this package never imports them. Their heavy
    dependencies load only when they run, and say which extra is missing. ``names``: only
    these entry points (None: all)."""
    from importlib.metadata import entry_points

    try:
        eps = entry_points(group=COMMANDS_GROUP)
    except TypeError:  # Python 3.9
        eps = entry_points().get(COMMANDS_GROUP, [])  # type: ignore[attr-defined]
    found = []
    for ep in sorted(eps, key=lambda e: e.name):
        if names is not None and ep.name not in names:
            continue
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


def _command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names (its first word, as argparse reads it), or None (``--help``)."""
    first = argv[0] if argv else None
    return None if first is None or first.startswith("-") else first


# Commands that run a frame loop or a page for as long as the device is up: glibc's allocator is set
# for that before anything is loaded (system/memory.py).
LONG_RUNNING = ("camera", "collect", "review")


def main(argv: Sequence[str] | None = None) -> int:
    # Pillow's warnings (corrupt EXIF, a picture above its own pixel limit) are not for the user:
    # each image's outcome is reported, and edgecls's own limit refuses what is too large.
    warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C while the command's modules load (before _main's handlers)
        print("edgecls: interrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["help"]:  # `edgecls help users add` = `edgecls users add --help`
        argv = [*argv[1:], "--help"] if argv[1:2] and not argv[1].startswith("-") and argv[1] != "help" else ["--help"]
    if _command(argv) in LONG_RUNNING:
        from edge_runtime.system.memory import for_frames

        for_frames()
    if argv[:2] == ["bench", "compare"]:
        from edge_runtime.cli.bench import compare_parser

        parser = compare_parser()
        finish_help(parser, examples("bench compare"))
        args = parser.parse_args(argv[2:])
    else:
        args = build_parser(_command(argv)).parse_args(argv)
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
    except OSError as e:  # the output cannot be written (a full disk, > /dev/full): one line, not a traceback
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        print(f"edgecls: error: {e.strerror}: the output cannot be written; free some space", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
