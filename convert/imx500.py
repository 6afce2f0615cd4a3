"""The Raspberry Pi AI Camera (Sony IMX500) as a target: the trained model, quantized by Sony's
Model Compression Toolkit for the IMX500 and converted by ``imxconv-tf`` into ``packerOut.zip``.

Sony's tools need TensorFlow 2.15 / Keras 2 (and Java 17 for ``imxconv-tf``), our training runs on
TensorFlow 2.21 / Keras 3, so the work happens in a separate virtual environment (built once,
cached: ``converter_env``) running ``_imx500_worker.py`` as a subprocess. The protocol between
the two sides is in that file's docstring: the Keras 3 model's layer weights, the calibration,
test and golden photos as raw uint8 pixels go in; the quantized predictions, the memory report
and ``packerOut.zip`` come back.

The chip does the normalization the graph does on the CPU (``imxconv-tf`` refuses the Rescaling
layer): its input stage feeds int8 = pixel - 128 with scale 1/128, within 1/255 of pixel/127.5 - 1.
So the IMX500 network is the trained graph without its first layer, calibrated and evaluated on
exactly what the chip feeds it.

On the Pi, ``imx500-package`` (Raspberry Pi OS's ``imx500-tools``) turns ``packerOut.zip`` into the
``network.rpk`` that picamera2's ``IMX500`` uploads: deploy runs it on the device (deploy/remote.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge_runtime.errors import EdgeclsError

from . import gate

# What ``pip install`` puts into the converter environment (tests/tools/imx500_env.sh installs the
# same). MCT 2.6 cannot share a venv with the converter (mct-quantizers 1.7 vs the converter's 1.6).
REQUIREMENTS = ("imx500-converter[tf]==3.19.2", "model-compression-toolkit==2.5.1")
WORKER = Path(__file__).with_name("_imx500_worker.py")
ENV_VAR = "EDGECLS_IMX500_ENV"  # a prepared environment directory (DIR/venv/bin/python), e.g. for CI
NAME_RE = re.compile(r"^(mobilenet_v1|mobilenet_v2|mobilenet_v3_small|mobilenet_v3_large)_([0-9.]+)_(\d+)$")
BUNDLE_DIR = "imx500"
PACKER = f"{BUNDLE_DIR}/packerOut.zip"
MEMORY_REPORT = f"{BUNDLE_DIR}/memory_report.json"
GOLDEN = f"{BUNDLE_DIR}/golden.json"
RPK = f"{BUNDLE_DIR}/network.rpk"  # made on the device by imx500-package; not part of the checksummed bundle
OUTPUT_SCALE = 1 / 256  # the converted softmax output: uint8, dequantized by picamera2's get_outputs
SCORE_TOLERANCE = 2 * OUTPUT_SCALE  # per score, chip vs the recorded simulation
CHIP_INPUT = {"dtype": "int8", "scale": 1 / 128, "zero_point": 0, "from_pixels": "pixel - 128"}


class Imx500Error(EdgeclsError):
    """The IMX500 network could not be made; the CPU bundle is unaffected."""


@dataclass
class Imx500Result:
    files: dict[str, Any]  # bundle name -> path or bytes, for write_bundle
    meta: dict[str, Any]  # edgecls.json's "imx500" section
    metrics: dict[str, Any]
    seconds: float
    table: str = ""
    stages: dict[str, float] = field(default_factory=dict)
    preds: dict[str, np.ndarray] = field(default_factory=dict)  # top-1 per test photo: "float", "imx500"


# --- the converter environment -------------------------------------------------------------


def env_key() -> str:
    return hashlib.sha256(repr((REQUIREMENTS, sys.version_info[:2])).encode()).hexdigest()[:12]


def env_dir() -> Path:
    """Where the converter environment lives: $EDGECLS_IMX500_ENV, else the user's cache."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgecls" / f"imx500-{env_key()}"


def check_java() -> None:
    java = shutil.which("java")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr if java else ""
    if not re.search(r'version "(1[7-9]|2\d)', out):
        raise Imx500Error("imxconv-tf needs Java 17 (found: " + (out.splitlines()[0] if out else "no java") +
                          "); install it: sudo apt install openjdk-17-jre-headless")


def converter_env(progress: Callable[[str], None] = print) -> Path:
    """The converter environment's directory (``venv/bin/python``, ``venv/bin/imxconv-tf``),
    built on first use (about 2.3 GB from PyPI, a minute or two) and reused after."""
    check_java()
    d = env_dir()
    if (d / ".done").exists():
        return d
    if os.environ.get(ENV_VAR):
        raise Imx500Error(f"{d}: ${ENV_VAR} names an unfinished converter environment; build it with "
                          f"tests/tools/imx500_env.sh {d}, or unset {ENV_VAR}")
    progress(f"building the IMX500 converter environment in {d} (once: {', '.join(REQUIREMENTS)}; about 2.3 GB)")
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    py = "python3.11" if shutil.which("python3.11") else sys.executable
    steps = [[py, "-m", "venv", str(d / "venv")],
             [str(d / "venv/bin/python"), "-m", "pip", "install", "-q", *REQUIREMENTS]]
    for cmd in steps:
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
            raise Imx500Error(f"{d}: building the IMX500 converter environment failed ({tail[0][:300]}); "
                              "it needs Python 3.9-3.11 and PyPI")
    (d / ".done").touch()
    return d


# --- the conversion ------------------------------------------------------------------------


def describe_model(model: Any) -> dict[str, Any]:
    """Architecture, width and size of an edgecls-trained MobileNet (its model name says them),
    its classes and dropout: what the worker needs to rebuild it in Keras 2."""
    m = NAME_RE.match(model.name)
    if not m:
        raise Imx500Error(f"model {model.name!r}: only MobileNets trained by edgecls train can be converted for the "
                          "IMX500 (the graph is rebuilt in Keras 2 layer by layer)")
    try:
        dropout = float(model.get_layer("dropout").rate)
    except ValueError:
        dropout = 0.0
    return {"arch": m.group(1), "alpha": float(m.group(2)), "size": int(m.group(3)),
            "classes": int(model.output_shape[-1]), "dropout": dropout}


def _network_name(name: str) -> str:
    """The converter names the network after the .keras file: letters, digits, _ only."""
    return (re.sub(r"[^A-Za-z0-9_]", "_", name) or "network")[:32]


def build_imx500(model: Any, calib: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, golden_x: np.ndarray,
                 labels: list[str], workdir: str | os.PathLike[str], progress: Callable[[str], None] = print, *,
                 name: str = "network", golden_files: list[str] | None = None, batch: int = 32,
                 timeout: float = 1800, keep_rescaling: bool = False) -> Imx500Result:
    """Quantize ``model`` (a loaded Keras 3 model, or the path of its .keras file) for the IMX500
    with ``calib`` (uint8 raw pixels, N x H x W x 3), evaluate it on ``test_x``/``test_y`` beside
    float, convert it, and return the bundle's ``imx500/`` files with the metadata. Raises
    Imx500Error (naming the layer where the converter does) when it cannot."""
    t0 = time.perf_counter()
    if isinstance(model, (str, os.PathLike)):
        from train._tf import keras

        model = keras.models.load_model(model, compile=False)
    spec = describe_model(model)
    env = converter_env(progress)
    job = Path(workdir)
    job.mkdir(parents=True, exist_ok=True)
    network = _network_name(name)
    np.savez(job / "weights.npz", **{f"{l.name}/{i}": w for l in model.layers for i, w in enumerate(l.get_weights())})
    for fname, arr in (("calib", calib), ("test_x", test_x), ("golden_x", golden_x)):
        np.save(job / f"{fname}.npy", np.asarray(arr, dtype=np.uint8))
    job_spec = {**spec, "network": network, "batch": batch, "imxconv": str(env / "venv/bin/imxconv-tf"),
                "timeout": timeout, "keep_rescaling": keep_rescaling}
    (job / "job.json").write_text(json.dumps(job_spec))
    progress(f"IMX500: quantizing with MCT for the IMX500 ({len(calib)} calibration photos) and converting "
             "with imxconv-tf (about a minute)")
    env_vars = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env_vars.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONNOUSERSITE="1")
    try:
        p = subprocess.run([str(env / "venv/bin/python"), str(WORKER), str(job)], capture_output=True, text=True,
                           timeout=timeout + 600, env=env_vars)
    except subprocess.TimeoutExpired:
        raise Imx500Error(f"IMX500 conversion took longer than {timeout + 600:.0f} s; see {job}") from None
    (job / "worker.log").write_text(p.stdout + p.stderr)
    try:
        r = json.loads((job / "result.json").read_text())
    except (OSError, json.JSONDecodeError):
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
        raise Imx500Error(f"IMX500 conversion crashed (exit {p.returncode}: {tail[0][:300]})") from None
    if not r["ok"]:
        raise Imx500Error(_failure(r))
    fit = r.get("fit_in_chip")
    report = r.get("memory_report", {}).get("report", {}).get("Memory Report", {})
    if fit is False:
        raise Imx500Error(f"network {network} does not fit in the IMX500's memory ({report.get('Memory Usage')} of "
                          f"{report.get('Total Memory Available On Chip')}); train a smaller model (--alpha, --size)")
    metrics = evaluate(np.array(r["float_pred"]), np.array(r["chip_float_pred"]), np.array(r["quant_pred"]),
                       np.asarray(test_y))
    golden = golden_expectations(np.array(r["golden"], dtype=np.float64), labels, golden_files)
    seconds = time.perf_counter() - t0
    files = {PACKER: job / "out" / "packerOut.zip",
             MEMORY_REPORT: (job / "out" / r["memory_report"]["file"]).read_bytes(),
             GOLDEN: json.dumps(golden, indent=2).encode()}
    meta = {"converted": True, "network": network, "packer": PACKER, "memory_report": MEMORY_REPORT,
            "golden": GOLDEN, "rpk": RPK,
            "input": {"width": spec["size"], "height": spec["size"], "normalization": "on the sensor", **CHIP_INPUT},
            "output": {"kind": "probabilities", "classes": len(labels), "dtype": "uint8", "scale": OUTPUT_SCALE},
            "memory": {k: report.get(k) for k in ("Memory Usage", "Total Memory Available On Chip",
                                                  "Memory Utilization", "Fit In Chip")},
            "metrics": metrics, "stages_seconds": r["stages"], "convert_seconds": round(seconds, 1),
            "tools": _tool_versions(env)}
    table = format_table(metrics, meta["memory"], seconds)
    preds = {"float": np.array(r["float_pred"]), "imx500": np.array(r["quant_pred"])}
    return Imx500Result(files, meta, metrics, seconds, table, r["stages"], preds)


def _tool_versions(env: Path) -> dict[str, str]:
    out = {}
    for req in REQUIREMENTS:
        name = re.split(r"[\[=<>]", req)[0]
        dist = list((env / "venv/lib").glob(f"python3*/site-packages/{name.replace('-', '_')}-*.dist-info"))
        out[name] = dist[0].name.split("-")[1].removesuffix(".dist") if dist else "?"
    return out


def _failure(r: dict) -> str:
    stage = {"rebuild": "rebuilding the model in Keras 2", "quantize": "MCT quantization",
             "evaluate": "evaluating the quantized model", "export": "exporting the quantized model",
             "imxconv": "imxconv-tf"}.get(r.get("stage", ""), r.get("stage", "?"))
    layer = f" at layer {', '.join(r['layers'])}" if r.get("layers") else ""
    return f"IMX500: {stage} failed{layer}: {r.get('error')}"


def evaluate(float_pred: np.ndarray, chip_float_pred: np.ndarray, quant_pred: np.ndarray, y: np.ndarray) -> dict:
    """Top-1 of the Keras 2 float model (the graph as trained), of the same graph fed what the chip
    feeds it, and of the IMX500-quantized network; and their agreement."""
    return {"test_images": int(len(y)), "float_top1": round(float(np.mean(float_pred == y)), 4),
            "chip_input_float_top1": round(float(np.mean(chip_float_pred == y)), 4),
            "imx500_top1": round(float(np.mean(quant_pred == y)), 4),
            "imx500_float_agreement": round(float(np.mean(quant_pred == float_pred)), 4)}


def judge(float_pred: np.ndarray, imx500_pred: np.ndarray, y: np.ndarray, labels: list[str], max_drop: float = 1.0,
          alpha: float = gate.ALPHA, min_agreement: float = gate.MIN_AGREEMENT) -> gate.Verdict:
    """The IMX500 network against the float graph, on the test photos' top-1, by the int8 gate's
    own rule (convert/gate.py: exact McNemar on the flips, the agreement floor) with convert's
    --max-drop, --gate-level and --min-agreement. Returns the verdict when it passes (possibly not
    judged: too few photos); raises Imx500Error with its reason when it fails."""
    v = gate.decide(gate.compare(float_pred, imx500_pred, y, labels), max_drop, alpha, min_agreement, name="IMX500")
    if not v.passed:
        raise Imx500Error(f"IMX500 gate: {v.reason}; try more calibration photos (--calibration)")
    return v


def golden_expectations(scores: np.ndarray, labels: list[str], files: list[str] | None) -> dict:
    """What the IMX500 should output for each golden photo: the quantized network's scores, as
    picamera2's get_outputs returns them (uint8 softmax dequantized: multiples of 1/256)."""
    photos = []
    for i, s in enumerate(scores):
        photos.append({"file": files[i] if files and i < len(files) else None, "scores": [round(float(v), 6) for v in s],
                       "top1": int(np.argmax(s)), "label": labels[int(np.argmax(s))]})
    return {"tolerance": SCORE_TOLERANCE, "photos": photos}


def format_table(m: dict, memory: dict, seconds: float) -> str:
    return (f"IMX500: top-1 float {m['float_top1']:.1%}, fed as the chip feeds it {m['chip_input_float_top1']:.1%}, "
            f"quantized {m['imx500_top1']:.1%} (agrees with float on {m['imx500_float_agreement']:.1%} of "
            f"{m['test_images']}); on-chip memory {memory.get('Memory Usage')} of "
            f"{memory.get('Total Memory Available On Chip')} ({memory.get('Memory Utilization')}); {seconds:.0f} s")


# --- on the device: packerOut.zip -> network.rpk (for deploy) ------------------------------
