"""``edgecls convert``, registered through the ``edgecls.commands`` entry point. TensorFlow loads
only when the command runs."""

from __future__ import annotations

import argparse
import json
import sys

from edge_runtime.cli.args import nonneg_float, positive_int

from .ladder import DEFAULT_TARGETS, TARGET_RUNTIMES

EXIT_NO_COMPILER = 3  # the CPU bundle is complete, the Edge TPU model could not be compiled here
EXIT_NO_IMX500 = 4  # the CPU bundle is complete, the IMX500 network could not be made


def _level(text: str) -> float:
    x = float(text)
    if not 0 < x < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {text}")
    return x


def _floor(text: str) -> float:
    x = float(text)
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return x


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert", help="quantize a trained model to a full-int8 bundle (workstation; needs edgecls[train])",
        description="Convert a training run (or a Keras model with --labels and --calibration-data) into a bundle: "
                    "model.tflite (full int8), model_float.tflite, labels.txt, golden photos and edgecls.json with "
                    "checksums. The int8 model has a second output, the features edgecls teach embeds photos with "
                    "(the pooled features, whitened against the variation within the training classes), and the "
                    "bundle the training classes' prototypes. The int8 model is evaluated against float and Keras on the test split and judged on "
                    "the paired evidence: the images float gets right and int8 wrong, and the reverse. It fails only "
                    "when int8 top-1 falls more than --max-drop points below float and an exact McNemar test says "
                    "that is unlikely to be chance (p < --gate-level), or when int8/float agreement is below "
                    "--min-agreement; it then tries repairs (more calibration photos, per-channel dense layers where "
                    "no --target-runtime refuses them) and, if none passes, fails writing nothing. "
                    f"Exit status: 0 done; 1 error; {EXIT_NO_COMPILER} bundle written but --edgetpu could not compile "
                    "(no edgetpu_compiler on this machine).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("source", metavar="RUN_DIR_OR_MODEL", help="a run directory of edgecls train, or a .keras/.h5 model")
    p.add_argument("--out", required=True, metavar="BUNDLE_DIR", help="bundle directory to write: a new or empty "
                   "folder, or an earlier bundle (replaced atomically); anything else is refused")
    p.add_argument("--io", choices=("uint8", "int8", "float32"), default="uint8",
                   help="input/output type of the int8 model (uint8: what the Edge TPU and MediaPipe accept)")
    p.add_argument("--calibration", type=positive_int, default=300, metavar="N",
                   help="calibration photos drawn from the training split, stratified by class")
    p.add_argument("--max-drop", type=nonneg_float, default=1.0, metavar="PP",
                   help="fail if int8 top-1 is more than PP percentage points below float")
    p.add_argument("--gate-level", type=_level, default=0.05, metavar="ALPHA",
                   help="level of the exact McNemar test: a drop fails only when p < ALPHA")
    p.add_argument("--min-agreement", type=_floor, default=0.95, metavar="F",
                   help="fail if int8 and float give the same top-1 on fewer than this fraction of test images")
    p.add_argument("--target-runtime", action="append", choices=TARGET_RUNTIMES, metavar="RUNTIME",
                   default=argparse.SUPPRESS,
                   help=f"a runtime the bundle must run on (repeat; {', '.join(TARGET_RUNTIMES)}; default: "
                        f"{' and '.join(DEFAULT_TARGETS)}); per-channel dense repairs only where none refuses them")
    p.add_argument("--no-repair", action="store_true", help="fail at once on real int8 damage, without the ladder")
    p.add_argument("--per-channel-dense", action="store_true",
                   help="quantize dense layers per channel (tflite-runtime 2.14 on arm64 crashes on them)")
    p.add_argument("--edgetpu", action="store_true",
                   help="check the int8 model against the Edge TPU's requirements and compile it when "
                        "edgetpu_compiler is installed")
    p.add_argument("--imx500", action="store_true",
                   help="also quantize and convert for the Raspberry Pi AI Camera (Sony IMX500): imx500/packerOut.zip "
                        "(builds Sony's converter environment once, about 2.3 GB; needs Java 17); exit status "
                        f"{EXIT_NO_IMX500} when it fails, with the CPU bundle complete")
    p.add_argument("--plain-features", action="store_true",
                   help="export the pooled features edgecls teach embeds with as they are, not whitened against "
                        "the variation within the training classes (saves the whitening's D x D int8 weights, 64 KB "
                        "at alpha 0.25; classes taught from a few photos are less accurate: "
                        "benchmarks/results/teach.md)")
    p.add_argument("--tar", action="store_true", help="also write BUNDLE_DIR.tar.gz")
    p.add_argument("--labels", metavar="FILE", help="label file, for a bare Keras model")
    p.add_argument("--calibration-data", metavar="DIR",
                   help="folder per class for a bare Keras model (or where a run's dataset moved to)")
    p.add_argument("--name", help="bundle name (default: the directory name)")
    p.add_argument("--author", metavar="TEXT", help="author in the models' TFLite metadata (default: edgecls VERSION)")
    p.add_argument("--license", metavar="TEXT", help="license in the models' TFLite metadata (e.g. an SPDX id)")
    p.add_argument("--no-metadata", action="store_true",
                   help="write the models without TFLite Model Metadata (labels, normalization) that MediaPipe and "
                        "LiteRT's tools read; without this, convert fails where the metadata cannot be written")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.add_argument("--verbose", action="store_true", help="also show what TensorFlow's C++ side logs")
    p.set_defaults(func=cmd_convert)


def cmd_convert(a: argparse.Namespace) -> int:
    from train.quiet import native_logs_filtered

    with native_logs_filtered(a.verbose):
        return _convert(a)


def _convert(a: argparse.Namespace) -> int:
    from train import _tf  # noqa: F401  (names the extra on a runtime-only install)

    from .run import Options, convert

    opts = Options(io=a.io, calibration=a.calibration, max_drop=a.max_drop, per_channel_dense=a.per_channel_dense,
                   edgetpu=a.edgetpu, imx500=a.imx500, tar=a.tar, labels=a.labels, calibration_data=a.calibration_data,
                   name=a.name, alpha=a.gate_level, min_agreement=a.min_agreement, repair=not a.no_repair,
                   metadata=not a.no_metadata, author=a.author, license=a.license, whiten=not a.plain_features,
                   targets=tuple(dict.fromkeys(getattr(a, "target_runtime", DEFAULT_TARGETS))))
    r = convert(a.source, a.out, opts)
    if a.json:
        print(json.dumps({"bundle": str(r.bundle), "metrics": r.metrics, "edgetpu": r.edgetpu}))
    print(f"edgecls: wrote {r.bundle}" + (f" and {r.bundle}.tar.gz" if a.tar else ""), file=sys.stderr)
    if not r.metrics["gate"]["judged"]:
        print(f"edgecls: warning: {r.metrics['gate']['reason']}", file=sys.stderr)
    if a.imx500:
        i5 = json.loads((r.bundle / "edgecls.json").read_text()).get("imx500", {})
        if not i5.get("converted"):
            print(f"edgecls: error: {i5.get('error')}; the CPU bundle is complete", file=sys.stderr)
            return EXIT_NO_IMX500
        print(f"edgecls: IMX500: {i5['packer']} ({i5['memory']['Memory Usage']} of "
              f"{i5['memory']['Total Memory Available On Chip']} on the chip)", file=sys.stderr)
        if not i5["metrics"]["gate"]["judged"]:
            print(f"edgecls: warning: IMX500: {i5['metrics']['gate']['reason']}", file=sys.stderr)
    if a.edgetpu and not r.edgetpu.get("compiled"):
        print(f"edgecls: Edge TPU model not compiled: {r.edgetpu.get('reason')}; the CPU bundle is complete",
              file=sys.stderr)
        return EXIT_NO_COMPILER
    if a.edgetpu:
        c = r.edgetpu["compiler"]
        print(f"edgecls: Edge TPU: {c['ops_on_edgetpu']} of {c['ops_total']} ops mapped, "
              f"{c['subgraphs']} subgraph(s)", file=sys.stderr)
    return 0
