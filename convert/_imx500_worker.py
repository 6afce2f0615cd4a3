"""The IMX500 conversion, run by the converter environment's Python (TensorFlow 2.15 / Keras 2,
Model Compression Toolkit 2.5.1, imx500-converter), never imported by edgecls itself.

    python _imx500_worker.py JOB_DIR

Protocol (written by ``convert/imx500.py``, which owns both sides):

JOB_DIR/job.json      {"arch", "alpha", "size", "classes", "dropout", "network", "batch", "imxconv"}
JOB_DIR/weights.npz   every layer's weights of the trained Keras 3 model, "LAYER/I" -> array
JOB_DIR/calib.npy     calibration photos, uint8 (N, H, W, 3), raw RGB pixels (normalization is in the graph)
JOB_DIR/test_x.npy    test photos, same form; JOB_DIR/golden_x.npy the golden photos
-> JOB_DIR/result.json {"ok": true, "stages": {...seconds}, "float_pred", "quant_pred", "golden",
                        "memory_report", "fit_in_chip", ...} or {"ok": false, "stage", "error", "layer"}
-> JOB_DIR/NETWORK.keras (MCT's quantized export) and JOB_DIR/out/ (imxconv-tf's output: packerOut.zip)

It only imports what this environment has: numpy, tensorflow, model_compression_toolkit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def build(tf, arch: str, alpha: float, size: int, classes: int, dropout: float, normalize: bool = True):
    """The same graph as train/model.py's ``build``, in Keras 2, layer for layer with the same names.
    ``normalize=False`` leaves out the Rescaling layer (imxconv-tf refuses it: on the IMX500 the
    sensor's input stage does that normalization, see ``chip_input``)."""
    k = tf.keras
    inputs = k.Input((size, size, 3), name="image")
    x = k.layers.Rescaling(1 / 127.5, offset=-1.0, name="normalize")(inputs) if normalize else inputs
    common = dict(input_tensor=x, include_top=False, weights=None, input_shape=(size, size, 3))
    if arch == "mobilenet_v1":
        backbone = k.applications.MobileNet(alpha=alpha, **common)
    elif arch == "mobilenet_v2":
        backbone = k.applications.MobileNetV2(alpha=alpha, **common)
    elif arch == "mobilenet_v3_small":
        backbone = k.applications.MobileNetV3Small(alpha=alpha, include_preprocessing=False, **common)
    elif arch == "mobilenet_v3_large":
        backbone = k.applications.MobileNetV3Large(alpha=alpha, include_preprocessing=False, **common)
    else:
        raise ValueError(f"unknown architecture {arch!r}")
    pooled = k.layers.GlobalAveragePooling2D(name="pool")(backbone.output)
    y = k.layers.Dropout(dropout, name="dropout")(pooled)
    y = k.layers.Dense(classes, activation="softmax", name="predictions")(y)
    return k.Model(inputs, y, name=f"{arch}_{alpha:g}_{size}")


def chip_input(pixels):
    """What the IMX500's input stage feeds the network for raw RGB pixels 0..255: int8 = pixel - 128
    with scale 1/128 (the default input norm picamera2 reads from network_info.txt: norm_val -2048,
    norm_shift 4, div_val 1024, div_shift 6), as float. Within 1/255 of the graph's pixel/127.5 - 1."""
    return (pixels.astype("float32") - 128.0) / 128.0


def carry_weights(model, weights) -> int:
    """Set every layer's weights from the Keras 3 model's, by layer name; a layer missing on
    either side or with another shape is an error naming it. Returns the arrays set."""
    names = {key.rsplit("/", 1)[0] for key in weights.files}
    n = 0
    for layer in model.layers:
        mine = layer.get_weights()
        if not mine:
            continue
        if layer.name not in names:
            raise LookupError(f"layer {layer.name}: no weights for it in the trained model")
        theirs = [weights[f"{layer.name}/{i}"] for i in range(len(mine))]
        for a, b in zip(mine, theirs):
            if a.shape != b.shape:
                raise LookupError(f"layer {layer.name}: weights of shape {b.shape}, expected {a.shape}")
        layer.set_weights(theirs)
        names.discard(layer.name)
        n += len(theirs)
    if names:
        raise LookupError(f"layer {sorted(names)[0]}: in the trained model but not in the rebuilt one")
    return n


def parse_report(out: Path) -> dict:
    """imxconv-tf's memory report (``*MemoryReport.json``), as it wrote it."""
    for f in sorted(out.rglob("*emory*eport*.json")):
        return {"file": str(f.relative_to(out)), "report": json.loads(f.read_text())}
    return {}


def _clean(line: str) -> str:
    """A converter log line without its time stamp, level and source location."""
    line = re.sub(r"^\S+ \S+ (ERROR|WARN\w*|INFO) : (CODE: )?", "", line.strip())
    return re.sub(r"\s*\[[^\]]*\.py:\d+\]$", "", line)[:400]


def _layers_in(model, text: str) -> list[str]:
    """The model's layers that an error names: by layer name, else by layer class (the converter
    names an unsupported op by its Keras class, e.g. ...image_preprocessing.Rescaling)."""
    if model is None:
        return []
    named = [l.name for l in model.layers if re.search(rf"(?<![A-Za-z0-9_]){re.escape(l.name)}(?![A-Za-z0-9_])", text)]
    if named:
        return named
    return [l.name for l in model.layers if re.search(rf"\b{type(l).__name__}\b", text) and not l.name == "image"]


class _Stage:
    """The stage now running, for the error line when one fails."""

    name = "load"


def main(job_dir: str) -> int:
    job_path = Path(job_dir)
    job = json.loads((job_path / "job.json").read_text())
    result: dict = {"ok": False, "stages": {}}
    stage, chip = _Stage(), None
    try:
        import numpy as np
        import tensorflow as tf
        tf.get_logger().setLevel("ERROR")

        stage.name = "rebuild"
        chip = _rebuild(tf, np, job, job_path, result)
        stage.name = "quantize"
        q_model = _quantize(chip, np.load(job_path / "calib.npy"), job["batch"], result)
        stage.name = "evaluate"
        _evaluate(chip, q_model, np.load(job_path / "test_x.npy"), np.load(job_path / "golden_x.npy"), job["batch"],
                  result)
        stage.name = "export"
        import model_compression_toolkit as mct

        q_path = job_path / f"{job['network']}.keras"
        mct.exporter.keras_export_model(model=q_model, save_model_path=str(q_path))
        stage.name = "imxconv"
        _imxconv(job, job_path, q_path, chip, result)
    except Exception as e:  # the caller turns this into one line naming the stage and layer
        msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        result.update(stage=stage.name, error=msg[:400], layers=_layers_in(chip, str(e)),
                      traceback=traceback.format_exc()[-4000:])
    return _done(job_path, result)


def _rebuild(tf, np, job: dict, job_path: Path, result: dict):
    """The trained model rebuilt in Keras 2 with its weights, and the chip's graph (no Rescaling)."""
    t = time.perf_counter()
    weights = np.load(job_path / "weights.npz")
    model = build(tf, job["arch"], job["alpha"], job["size"], job["classes"], job["dropout"])
    result["weights_carried"] = carry_weights(model, weights)
    # keep_rescaling: the graph as trained, which imxconv-tf refuses (tests use it for that error)
    chip = build(tf, job["arch"], job["alpha"], job["size"], job["classes"], job["dropout"],
                 normalize=job.get("keep_rescaling", False))
    carry_weights(chip, weights)
    test_x = np.load(job_path / "test_x.npy")
    result["float_pred"] = model.predict(test_x.astype(np.float32), batch_size=job["batch"], verbose=0).argmax(1).tolist()
    result["stages"]["rebuild"] = round(time.perf_counter() - t, 2)
    return chip


def _quantize(chip, calib, bs: int, result: dict):
    """MCT post-training quantization for the IMX500's target platform, on the calibration photos."""
    import model_compression_toolkit as mct

    t = time.perf_counter()
    n_iter = -(-len(calib) // bs)

    def representative():
        for i in range(n_iter):
            yield [chip_input(calib[i * bs:(i + 1) * bs])]

    tpc = mct.get_target_platform_capabilities("tensorflow", "imx500", target_platform_version="v1")
    q_model, _ = mct.ptq.keras_post_training_quantization(chip, representative, target_platform_capabilities=tpc)
    result["stages"]["quantize"] = round(time.perf_counter() - t, 2)
    return q_model


def _evaluate(chip, q_model, test_x, golden_x, bs: int, result: dict) -> None:
    t = time.perf_counter()
    result["chip_float_pred"] = chip.predict(chip_input(test_x), batch_size=bs, verbose=0).argmax(1).tolist()
    result["quant_pred"] = q_model.predict(chip_input(test_x), batch_size=bs, verbose=0).argmax(1).tolist()
    result["golden"] = q_model.predict(chip_input(golden_x), batch_size=bs, verbose=0).tolist()
    result["stages"]["evaluate"] = round(time.perf_counter() - t, 2)


def _imxconv(job: dict, job_path: Path, q_path: Path, chip, result: dict) -> None:
    """Sony's converter on the exported model: packerOut.zip and the memory report, or the error."""
    t = time.perf_counter()
    out = job_path / "out"
    p = subprocess.run([job["imxconv"], "-i", str(q_path), "-o", str(out), "--overwrite-output"],
                       capture_output=True, text=True, timeout=job.get("timeout", 1800))
    result["stages"]["imxconv"] = round(time.perf_counter() - t, 2)
    (job_path / "imxconv.log").write_text(p.stdout + p.stderr)
    report = parse_report(out)
    result["memory_report"] = report
    result["fit_in_chip"] = _fit(report)
    if p.returncode != 0 or not (out / "packerOut.zip").exists():
        errors = [l for l in (p.stdout + p.stderr).splitlines() if re.search(r"error|not supported|unsupported", l, re.I)]
        msg = errors[-1] if errors else ((p.stdout + p.stderr).strip().splitlines()[-1:] or ["no output"])[0]
        result.update(stage="imxconv", error=f"imxconv-tf exit {p.returncode}: {_clean(msg)}", layers=_layers_in(chip, msg))
        return
    result["ok"] = True


def _fit(report: dict):
    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k.lower().replace(" ", "").replace("_", "") == "fitinchip":
                    return v
                r = walk(v)
                if r is not None:
                    return r
        if isinstance(o, list):
            for v in o:
                r = walk(v)
                if r is not None:
                    return r
        return None

    return walk(report.get("report"))


def _done(job_path: Path, result: dict) -> int:
    (job_path / "result.json").write_text(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
