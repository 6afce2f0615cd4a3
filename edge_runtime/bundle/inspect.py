"""``edgecls inspect``: what a model (or each model of a bundle) is, before anyone runs it.

For a ``.tflite``: its size and sha256; inputs and outputs (shape, type, quantization); ops by
type; the TFLite metadata when it carries some (labels, normalization); whether it is compiled
for the Edge TPU, else which of its ops the Edge TPU compiler is predicted to map; what kind of
model it is; and whether edgecls can run it here, found by loading it and invoking it once on
a blank input (a model that loads but fails at invoke is caught). A bundle is checked
(checksums, format) and each of its models inspected.

Nothing here needs TensorFlow: the interpreter package, the op table of
``edgetpu_ops`` and the metadata reader of ``tflite_metadata``.
"""

from __future__ import annotations

import collections
import hashlib
import os
from typing import Any

import numpy as np

from edge_runtime.bundle.format import is_bundle, load_bundle
from edge_runtime.errors import EdgeclsError
from edge_runtime.model import interpreter as interp
from edge_runtime.model import metadata as tflite_metadata

RUNNABLE_TYPES = ("uint8", "int8", "float32")


def inspect(path: str | os.PathLike[str], interpreter: str | None = None) -> dict[str, Any]:
    """The report for a bundle or a ``.tflite``; ``runs`` says whether edgecls can run it."""
    p = os.fspath(path)
    if is_bundle(p):
        return inspect_bundle(p, interpreter)
    return inspect_model(p, interpreter)


def inspect_bundle(path: str, interpreter: str | None = None) -> dict[str, Any]:
    try:
        b = load_bundle(path)
    except EdgeclsError as e:
        return {"path": path, "kind": "bundle that does not check out", "runs": False, "reason": str(e)}
    models = {kind: inspect_model(str(f), interpreter) for kind in ("cpu", "edgetpu", "float")
              if (f := b.model(kind)) is not None}
    for m in models.values():
        m["needs"] = None  # a bundle brings its labels.txt and its input contract: nothing more is needed
    cpu = models["cpu"]
    return {"path": str(b.path), "kind": "edgecls bundle", "name": b.name, "runs": cpu["runs"],
            "reason": cpu.get("reason"), "labels": {"count": len(b.labels), "first": b.labels[:5]},
            "input": b.input.to_json(), "output": b.output.to_json(),
            "golden_photos": len((b.meta.get("golden") or {}).get("photos") or []),
            "tflite_metadata": b.meta.get("tflite_metadata"), "models": models,
            "features": (b.meta.get("features") or {}).get("dim"), "taught": _taught(b.meta)}


def _taught(meta: dict[str, Any]) -> dict[str, Any] | None:
    """A taught bundle's parent and what teaching did to its classes (edgecls teach)."""
    t = meta.get("taught")
    if not isinstance(t, dict):
        return None
    return {k: t.get(k) for k in ("parent", "added", "refined", "kept", "only")} | {"photos": len(t.get("photos") or [])}


def inspect_model(path: str, interpreter: str | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"path": path}
    try:
        data = interp.read_model_file(path)
    except EdgeclsError as e:
        return {**r, "kind": "not a TFLite model", "runs": False, "reason": _short(str(e), path)}
    r["size_bytes"] = len(data)
    r["sha256"] = hashlib.sha256(data).hexdigest()
    r["edgetpu_compiled"] = interp.is_edgetpu_model(data)
    try:
        meta = tflite_metadata.read(data, path)
        r["metadata"] = meta.to_json() if meta else None
    except EdgeclsError as e:
        meta, r["metadata"], r["metadata_error"] = None, None, str(e)
    package = interp.resolve_package(interpreter)
    r["interpreter"] = f"{package.name} {package.version}"
    try:
        r["inputs"], r["outputs"] = _tensors(path, package)
    except EdgeclsError as e:
        return {**r, "kind": "TFLite model that does not load", "runs": False, "reason": _short(str(e), path)}
    try:
        ops = interp.read_ops(path, package)
        r["ops"] = dict(collections.Counter(op.name for op in ops))
    except EdgeclsError as e:
        ops, r["ops"], r["ops_error"] = None, None, str(e)
    r["edgetpu"] = _edgetpu(path, ops, r)
    r["softmax_output"] = interp.inspect_graph(path, package).softmax_output
    r["kind"] = _kind(r, meta)
    r["runs"], r["reason"] = _runs(path, package, r, meta)
    r["needs"] = _needs(r, meta)
    return r


def _tensors(path: str, package: interp.InterpreterPackage) -> tuple[list[dict], list[dict]]:
    with interp.captured_stderr() as log:
        try:
            it = package.Interpreter(model_path=path)
            ins, outs = it.get_input_details(), it.get_output_details()
        except Exception as e:
            raise interp.ModelError(interp._explain_load_error(path, package, e, log)) from None
    _, feats = interp.split_outputs(outs, interp.signature_outputs(it))

    def one(d: dict, output: bool = False) -> dict:
        scale, zp = d.get("quantization", (0.0, 0))
        t = {"name": d["name"], "shape": [int(x) for x in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
             "scale": float(scale), "zero_point": int(zp)}
        if output and feats is not None:  # a classifier with a feature output (edgecls convert's)
            t["role"] = interp.FEATURES_OUTPUT if d is feats else interp.SCORES_OUTPUT
        return t

    return [one(d) for d in ins], [one(d, output=True) for d in outs]


def _scores(outs: list[dict]) -> list[dict]:
    """The outputs a classifier scores with: all but a feature output."""
    return [o for o in outs if o.get("role") != interp.FEATURES_OUTPUT]


def _edgetpu(path: str, ops: list[interp.OpInfo] | None, r: dict) -> dict[str, Any] | None:
    """Compiled: how many ops the Edge TPU runs (inside its custom ops) and how many the CPU;
    else the preflight's prediction for an int8 model."""
    if ops is None:
        return None
    if r["edgetpu_compiled"]:
        tpu = sum(op.name in ("edgetpu-custom-op", "CUSTOM") for op in ops)
        return {"compiled": True, "edgetpu_custom_ops": tpu, "cpu_ops": len(ops) - tpu}
    from edge_runtime.model.edgetpu_ops import preflight

    return {"compiled": False, "prediction": preflight(path, ops).to_dict()}


def _kind(r: dict, meta: tflite_metadata.ModelMetadata | None) -> str:
    ins, outs = r["inputs"], r["outputs"]
    prefix = "Edge TPU-compiled " if r["edgetpu_compiled"] else ""
    if len(ins) != 1 or len(ins[0]["shape"]) != 4:
        return f"{prefix}model with {len(ins)} input(s) of shape {[i['shape'] for i in ins]} (not an image classifier)"
    channels = ins[0]["shape"][3]
    image = "RGB image" if channels == 3 else "grayscale image" if channels == 1 else f"{channels}-channel"
    feature = [o for o in outs if o.get("role") == interp.FEATURES_OUTPUT]
    outs = _scores(outs)
    if len(outs) != 1:
        return f"{prefix}{image} model with {len(outs)} outputs (a detector or segmenter, not a classifier)"
    n = int(np.prod(outs[0]["shape"]))
    if feature:
        return f"{prefix}{image} classifier ({n} classes) with a feature output ({int(np.prod(feature[0]['shape']))} values)"
    if meta and meta.is_embedder:
        return f"{prefix}{image} embedder ({n}-value feature vector, no labels)"
    if r.get("softmax_output") or (meta and meta.labels_file):
        return f"{prefix}{image} classifier ({n} classes)"
    return f"{prefix}{image} model with {n} output values (a classifier's logits, or features)"


def _runs(path: str, package: interp.InterpreterPackage, r: dict, meta: Any) -> tuple[bool, str | None]:
    """Whether ``edgecls classify`` runs it here: an RGB classifier that loads and invokes once on
    a blank input (the Edge TPU's model only where its delegate loads)."""
    ins, outs = r["inputs"], _scores(r["outputs"])
    if r["edgetpu_compiled"]:
        try:
            delegate = interp.load_edgetpu_delegate(package)
        except EdgeclsError as e:
            return False, f"compiled for the Edge TPU, which is not usable here ({e}); run the CPU model"
        invoked = _invoke(path, package, "edgetpu", [delegate])
    else:
        invoked = _invoke(path, package, "cpu", None)
    r["invoke"] = "ok" if invoked is None else invoked
    if "embedder" in r["kind"]:
        return False, "an embedder, not a classifier: its output is a feature vector without labels"
    if len(ins) != 1 or len(outs) != 1:
        return False, f"a classifier has one input and one output; this model has {len(ins)} and {len(outs)}"
    shape, dtype = ins[0]["shape"], ins[0]["dtype"]
    if len(shape) != 4 or shape[0] != 1 or shape[3] != 3:
        return False, f"input shape {shape} is not [1, height, width, 3]; edgecls runs RGB image classifiers"
    if dtype not in RUNNABLE_TYPES:
        return False, f"input type {dtype}; edgecls feeds {', '.join(RUNNABLE_TYPES)}"
    return invoked is None, invoked


def _invoke(path: str, package: interp.InterpreterPackage, backend: str, delegates: list | None) -> str | None:
    """None when the model loads and runs once on a blank input, else why not."""
    try:
        engine = interp.InterpreterEngine(path, package, backend, 1, delegates)
    except EdgeclsError as e:
        return _short(str(e), path)
    try:
        with interp.captured_stderr() as log:
            try:
                engine.run(np.zeros(engine.input.shape, engine.input.dtype))
                return None
            except Exception as e:
                error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        causes = interp._causes(log)
        return _short(f"loads, but invoke() fails: {error}" + (f" ({causes})" if causes else ""), path)
    finally:
        engine.close()


def _short(reason: str, path: str) -> str:
    """A reason without the path in front (the report names it) and without repeated sentences
    (LiteRT repeats one per bad tensor)."""
    if reason.startswith(path + ": "):
        reason = reason[len(path) + 2:]
    for i in range(len(reason) - 30):
        again = reason.find(reason[i:i + 30], i + 30)
        if again >= 0:
            reason = reason[:again].rstrip() + " (and the same for more tensors)"
            break
    out = reason
    return out if len(out) <= 400 else out[:397] + "..."


def _needs(r: dict, meta: tflite_metadata.ModelMetadata | None) -> dict[str, Any]:
    """What edgecls needs beyond the file to run it right: labels and the input's normalization."""
    labels = "from the metadata" if meta and meta.labels is not None else "a label file (edgecls classify --labels FILE)"
    inp = r["inputs"][0] if r["inputs"] else {}
    if inp.get("dtype") == "float32":
        n = meta.normalization if meta else None
        norm = (f"from the metadata: (pixel - {n.mean:g}) / {n.std:g}" if n else
                "not in the file (edgecls adopt --mean M --std S: 0/255 for [0, 1] inputs, 127.5/127.5 for [-1, 1])")
    else:
        norm = "none: pixels enter as the quantized input's bytes (uint8 as is, int8 shifted by 128)"
    return {"labels": labels, "normalization": norm}


def format_report(r: dict[str, Any]) -> str:
    """The report as text, one model after the other for a bundle."""
    if "models" in r:
        head = [f"{r['path']}: {r['kind']} '{r['name']}', {r['labels']['count']} labels, input "
                f"{r['input']['height']}x{r['input']['width']} ({r['input']['resize']} resize), "
                f"{r['golden_photos']} golden photos",
                f"  TFLite metadata in its models: {_written(r.get('tflite_metadata'), r['models'])}"]
        t = r.get("taught")
        if t:
            parent = t.get("parent") or {}
            head.append(f"  taught from '{parent.get('name')}' (edgecls.json sha256 "
                        f"{str(parent.get('edgecls_json_sha256'))[:12]}...) with {t['photos']} photos: added "
                        f"{', '.join(t.get('added') or []) or 'none'}; refined {', '.join(t.get('refined') or []) or 'none'}"
                        f"{'; the taught classes only' if t.get('only') else ''}; labels {', '.join(r['labels']['first'])}"
                        f"{', ...' if r['labels']['count'] > 5 else ''}")
        elif r.get("features"):
            head.append(f"  features: {r['features']} values a photo; `edgecls teach` can teach it new classes")
        return "\n".join(head + [format_report(m) for m in r["models"].values()])
    lines = [f"{r['path']}: {r['kind']}"]
    if "size_bytes" in r:
        lines.append(f"  size {r['size_bytes']:,} bytes, sha256 {r['sha256'][:16]}...")
    for side in ("inputs", "outputs"):
        for t in r.get(side, []):
            q = f", scale {t['scale']:.6g}, zero point {t['zero_point']}" if t["scale"] else ""
            role = f" ({t['role']})" if t.get("role") else ""
            lines.append(f"  {side[:-1]:<6} {t['name'][:40]:<40} {str(t['shape']):<18} {t['dtype']}{q}{role}")
    if r.get("ops"):
        lines.append("  ops    " + ", ".join(f"{k} x{v}" for k, v in sorted(r["ops"].items(), key=lambda kv: -kv[1])))
    m = r.get("metadata")
    if m:
        n = m.get("normalization")
        lines.append(f"  metadata '{m['name']}': labels "
                     + (f"{m['labels']['count']} ({', '.join(m['labels']['first'][:3])}, ...)" if m["labels"] else "none")
                     + (f", normalization (x - {n['mean']:g}) / {n['std']:g}" if n else "")
                     + (f", files {', '.join(m['packed_files'])}" if m["packed_files"] else ""))
    elif "metadata" in r:
        lines.append("  metadata: none" + (f" ({r['metadata_error']})" if r.get("metadata_error") else ""))
    e = r.get("edgetpu")
    if e and e["compiled"]:
        lines.append(f"  Edge TPU: compiled, {e['edgetpu_custom_ops']} Edge TPU custom op(s), {e['cpu_ops']} op(s) on the CPU")
    elif e:
        p = e["prediction"]
        first = p["first_cpu_op"]
        lines.append(f"  Edge TPU: {p['mapped']} of {p['ops']} ops predicted to map"
                     + (f"; from op {first['index']} ({first['op']}) on the CPU: {first['reason']}" if first else ""))
    if r.get("needs"):
        lines.append(f"  needs  labels: {r['needs']['labels']}; normalization: {r['needs']['normalization']}")
    if r.get("invoke") not in (None, "ok"):
        lines.append(f"  invoke once on a blank input: {r['invoke']}")
    lines.append("  edgecls runs it: " + ("yes" if r["runs"] else f"no: {r.get('reason')}"))
    return "\n".join(lines)


def _written(record: dict | None, models: dict[str, dict]) -> str:
    """Whether the bundle's models carry TFLite metadata: as edgecls.json records it (convert), else
    as the model files show it (adopt keeps a model's own metadata and records nothing)."""
    if record:
        return "yes" if record.get("written") else f"no ({record.get('reason')})"
    carry = [f"{os.path.basename(m['path'])} ('{m['metadata']['name']}')" for m in models.values() if m.get("metadata")]
    return f"yes: {', '.join(carry)}" if carry else "none"
