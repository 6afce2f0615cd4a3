"""``edgecls teach``: a bundle learns new classes from a few photos, on the device, without
TensorFlow (edge_runtime/dataset/teach.py, edge_runtime/bundle/head.py).

The bundle is converted once per module from a tiny Keras model with weights set by hand
(nothing trained): mean colour -> Dense(6, relu) "hidden" (red, green and blue, each high and
low) -> Dense(4, softmax) over red, green, yellow and dark. The training photos have no blue, so
the model's own classifier cannot tell blue from dark, but its features (the hidden layer, the
input of its last Dense layer) can: teaching "blue" from ten photos must work.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, run_edgecls

CLASSES = ["red", "green", "yellow", "dark"]
COLOURS = {"red": (200, 50, 0), "green": (50, 200, 0), "yellow": (200, 200, 0), "dark": (50, 50, 0),
           "blue": (50, 50, 200), "white": (200, 200, 200)}
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


def _photo(path: Path, colour: str, rng: np.random.Generator) -> Path:
    from PIL import Image

    img = np.array(COLOURS[colour], np.float64) + rng.normal(0, 25, (16, 16, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


def _dataset(root: Path, counts: dict[str, int], seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    for colour, n in counts.items():
        for i in range(n):
            _photo(root / colour / f"{i:03d}.png", colour, rng)
    return root


def _model(path: Path) -> Path:
    from train._tf import keras

    x = keras.Input((16, 16, 3), name="image")
    pooled = keras.layers.GlobalAveragePooling2D()(x)
    hidden = keras.layers.Dense(6, activation="relu", name="hidden")(pooled)
    out = keras.layers.Dense(4, activation="softmax", name="predictions")(hidden)
    m = keras.Model(x, out)
    k = 4 / 255
    w = np.zeros((3, 6), np.float32)
    for c in range(3):
        w[c, 2 * c], w[c, 2 * c + 1] = k, -k  # colour c high, colour c low
    b = np.array([-2, 2, -2, 2, -2, 2], np.float32)
    # red = red hi + green lo, green = red lo + green hi, yellow = both hi, dark = both lo; blue unused.
    w2 = 5 * np.array([[1, 0, 1, 0], [0, 1, 0, 1], [0, 1, 1, 0], [1, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]], np.float32)
    m.get_layer("hidden").set_weights([w, b])
    m.get_layer("predictions").set_weights([w2, np.zeros(4, np.float32)])
    m.save(path)
    return path


@pytest.fixture(scope="module")
def parent(colours_bundle) -> Path:
    """The tiny model converted by `edgecls convert` (conftest.py ``colours_bundle``)."""
    return colours_bundle


def _meta(bundle: Path) -> dict:
    return json.loads((bundle / "edgecls.json").read_text())


def _top1(bundle: Path, photos: list[Path]) -> list[str]:
    from edge_runtime import Classifier

    with Classifier(bundle, backend="cpu") as clf:
        return [clf.classify(p).classes[0].label for p in photos]


def _nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no staging left


def test_convert_exports_features_and_prototypes_and_the_scores_stay_the_scores(parent, tmp_path):
    from edge_runtime import Classifier
    from edge_runtime.bundle.head import Prototypes

    meta = _meta(parent)
    f = meta["features"]
    assert f["dim"] == 6 and f["prototypes"] == "head/prototypes.npz" and "head/prototypes.npz" in meta["files"]
    assert f["layer"] == "embedding"  # the hidden layer's output, whitened (convert/embedding.py)
    assert meta["files"]["head/prototypes.npz"]["size"] < 4096  # a few KB
    protos = Prototypes.from_file(parent / "head/prototypes.npz")
    assert protos.labels == CLASSES and protos.counts.sum() == f["photos"] and "head" not in meta
    photos = [_photo(tmp_path / f"{c}.png", c, np.random.default_rng(5)) for c in CLASSES]
    with Classifier(parent, backend="cpu") as clf:
        assert clf.num_classes == 4 and clf.has_features  # the scores output, not the 6 features
        for p, c in zip(photos, CLASSES):
            r = clf.classify(p)
            assert r.classes[0].label == c and r.raw.shape == (1, 4)
            feat = clf.embed(clf.prepare(p))
            assert feat.shape == (6,) and feat.dtype == np.float32
            assert np.argmax(protos.means @ feat / np.linalg.norm(protos.means, axis=1)) == CLASSES.index(c)
    p = run_edgecls("verify", parent)
    assert p.returncode == 0 and "golden photos match" in p.stdout, p.stdout + p.stderr


def test_the_features_are_whitened_inside_the_model_and_the_scores_do_not_change(parent, tmp_path):
    """convert/embedding.py: the feature output passes through the whitening (a dense layer on the
    feature branch only); --plain-features leaves it out. The raw scores are bit-identical either way."""
    from convert.run import Options, convert
    from edge_runtime import Classifier

    root = parent.parent
    opts = Options(labels=str(root / "labels.txt"), calibration_data=str(root / "data"), calibration=50, whiten=False)
    plain = convert(root / "colours.keras", tmp_path / "plain", opts, progress=lambda s: None).bundle
    whitened, raw = _meta(parent)["features"], _meta(plain)["features"]
    assert whitened["layer"] == "embedding" and whitened["whitening"]["covariance"] == "within-class"
    assert raw["layer"] == "pool" and "whitening" not in raw and raw["dim"] == whitened["dim"] == 6
    photos = [_photo(tmp_path / f"{c}.png", c, np.random.default_rng(7)) for c in CLASSES + ["blue"]]
    with Classifier(parent, backend="cpu") as a, Classifier(plain, backend="cpu") as b:
        for p in photos:
            assert np.array_equal(a.infer(a.prepare(p)), b.infer(b.prepare(p)))
            fa, fb = a.embed(a.prepare(p)), b.embed(b.prepare(p))
            assert np.all(fb >= 0) and np.any(fa < 0)  # ReLU features in, a rotation and scaling of them out
    assert (parent / "model.tflite").stat().st_size > (plain / "model.tflite").stat().st_size  # its 6 x 6 weights


def test_converted_models_name_their_input_and_outputs_in_a_signature(parent):
    """convert freezes one traced function (convert/quantize.py) and writes back the signature a
    SavedModel conversion gives: the runtime finds ``scores`` and ``features`` by name."""
    from ai_edge_litert.interpreter import Interpreter

    for name in ("model.tflite", "model_float.tflite"):
        it = Interpreter(model_path=str(parent / name))
        sig = it.get_signature_list()
        assert sig == {"serving_default": {"inputs": ["image"], "outputs": ["features", "scores"]}}, (name, sig)
        it.allocate_tensors()
        runner = it.get_signature_runner("serving_default")
        inp = it.get_input_details()[0]
        out = runner(image=np.zeros(inp["shape"], inp["dtype"]))
        assert out["scores"].shape == (1, len(CLASSES)) and out["features"].shape == (1, 6), (name, out)


def test_teach_adds_a_class_the_model_never_saw_and_keeps_the_others(parent, tmp_path):
    photos = _dataset(tmp_path / "new", {"blue": 10}, seed=2)
    out = tmp_path / "taught"
    p = run_edgecls("teach", parent, photos, "--out", out)
    assert p.returncode == 0, p.stderr
    assert "added blue" in p.stdout and "5 classes" in p.stdout
    assert (out / "labels.txt").read_text().split("\n")[:-1] == CLASSES + ["blue"]
    held_out = _dataset(tmp_path / "held", {c: 5 for c in CLASSES + ["blue"]}, seed=3)
    for c in CLASSES + ["blue"]:
        assert _top1(out, sorted((held_out / c).iterdir())) == [c] * 5, c
    assert _top1(parent, sorted((held_out / "blue").iterdir())) != ["blue"] * 5  # the parent cannot
    meta = _meta(out)
    taught = meta["taught"]
    parent_sha = hashlib.sha256((parent / "edgecls.json").read_bytes()).hexdigest()
    assert taught["parent"] == {"name": _meta(parent)["name"], "edgecls_json_sha256": parent_sha}
    assert taught["added"] == ["blue"] and taught["kept"] == CLASSES and taught["refined"] == []
    assert sorted(x["file"] for x in taught["photos"]) == [f"{i:03d}.png" for i in range(10)]
    assert all(x["sha256"] == hashlib.sha256((photos / "blue" / x["file"]).read_bytes()).hexdigest()
               for x in taught["photos"])
    golden_labels = sorted(g["label"] for g in meta["golden"]["photos"])
    assert golden_labels == sorted(CLASSES + ["blue"])  # every class
    assert meta["head"]["kind"] == "cosine-ncm" and meta["output"]["classes"] == 5
    assert (out / "model.tflite").read_bytes() == (parent / "model.tflite").read_bytes()  # the model is unchanged
    # the drift reference is the taught head's own (leave-one-out on the taught photos), not the parent's
    ref = meta["reference"]
    assert ref["photos"] == 10 and "leave-one-out" in ref["source"] and ref["labels"].get("4", 0) >= 8, ref
    v = run_edgecls("verify", out, "--json")
    assert v.returncode == 0 and json.loads(v.stdout)["ok"], v.stdout + v.stderr
    i = run_edgecls("inspect", out)
    assert i.returncode == 0 and f"taught from '{_meta(parent)['name']}'" in i.stdout and "added blue" in i.stdout
    assert "classifier (4 classes) with a feature output (6 values)" in i.stdout and "(features)" in i.stdout
    c = run_edgecls("classify", out, held_out / "blue", "--json")
    assert c.returncode == 0 and {json.loads(l)["classes"][0]["label"] for l in c.stdout.splitlines()} == {"blue"}


def test_a_taught_bundle_can_be_taught_again_and_refining_weighs_every_photo(parent, tmp_path):
    from edge_runtime.bundle.head import Prototypes

    first = tmp_path / "one"
    assert run_edgecls("teach", parent, _dataset(tmp_path / "a", {"blue": 6}), "--out", first).returncode == 0
    second = tmp_path / "two"
    p = run_edgecls("teach", first, _dataset(tmp_path / "b", {"blue": 4, "dark": 5}, seed=4), "--out", second)
    assert p.returncode == 0, p.stderr
    assert "refined blue, dark" in p.stdout
    before, after = Prototypes.from_file(first / "head/prototypes.npz"), Prototypes.from_file(second / "head/prototypes.npz")
    assert after.labels == before.labels == CLASSES + ["blue"]
    assert after.counts[4] == 10 and after.counts[3] == before.counts[3] + 5
    assert _meta(second)["taught"]["refined"] == ["blue", "dark"]
    assert run_edgecls("verify", second).returncode == 0


def test_only_replaces_the_classes(parent, tmp_path):
    out = tmp_path / "only"
    p = run_edgecls("teach", parent, _dataset(tmp_path / "d", {"blue": 5, "white": 5}), "--out", out, "--only")
    assert p.returncode == 0, p.stderr
    assert (out / "labels.txt").read_text() == "blue\nwhite\n"
    held = _dataset(tmp_path / "h", {"blue": 3, "white": 3}, seed=9)
    assert _top1(out, sorted((held / "blue").iterdir()) + sorted((held / "white").iterdir())) == ["blue"] * 3 + ["white"] * 3
    assert _meta(out)["taught"]["kept"] == [] and run_edgecls("verify", out).returncode == 0


@pytest.mark.parametrize("case", ["two photos", "unreadable", "long name", "no classes"])
def test_bad_photos_are_refused_in_one_line_and_nothing_is_written(parent, tmp_path, case):
    data = _dataset(tmp_path / "data", {"blue": 5})
    if case == "two photos":
        _dataset(data, {"white": 2})
        expect = ("white", "2 photo(s)", "at least 3")
    elif case == "unreadable":
        (data / "blue" / "004.png").write_bytes(b"not a png")
        expect = ("004.png", "remove or replace the photo")
    elif case == "long name":
        shutil.copytree(data / "blue", data / ("x" * 70))
        expect = ("cannot be a class folder", "rename the folder")
    else:
        shutil.rmtree(data / "blue")
        (data / "_review").mkdir()
        expect = ("no class folders",)
    out = tmp_path / "out"
    assert_one_line_error(run_edgecls("teach", parent, data, "--out", out), *expect)
    _nothing_written(out)


def test_only_with_a_single_class_is_refused(parent, tmp_path):
    out = tmp_path / "out"
    p = run_edgecls("teach", parent, _dataset(tmp_path / "d", {"blue": 5}), "--out", out, "--only")
    assert_one_line_error(p, "at least 2 classes")
    _nothing_written(out)


def test_adopt_keeps_a_feature_output_and_the_adopted_bundle_can_be_taught(parent, tmp_path):
    adopted = tmp_path / "adopted"
    photos = _dataset(tmp_path / "photos", {c: 5 for c in CLASSES}, seed=11)
    p = run_edgecls("adopt", parent / "model.tflite", "--photos", photos, "--out", adopted, "--labels",
                    parent / "labels.txt")
    assert p.returncode == 0, p.stderr[-2000:]
    f = _meta(adopted)["features"]
    assert f["dim"] == 6 and f["photos"] == 20 and "head/prototypes.npz" in _meta(adopted)["files"]
    out = tmp_path / "taught"
    assert run_edgecls("teach", adopted, _dataset(tmp_path / "d", {"blue": 10}), "--out", out).returncode == 0
    held = _dataset(tmp_path / "h", {"blue": 3, "red": 3}, seed=12)
    assert _top1(out, sorted((held / "blue").iterdir()) + sorted((held / "red").iterdir())) == ["blue"] * 3 + ["red"] * 3


def test_a_bundle_without_features_says_it_cannot_be_taught(coral_bundle, tmp_path):
    out = tmp_path / "out"
    p = run_edgecls("teach", coral_bundle, _dataset(tmp_path / "d", {"blue": 3}), "--out", out)
    assert_one_line_error(p, str(coral_bundle), "carries no features", "cannot be taught", "edgecls convert")
    _nothing_written(out)


def test_the_parent_is_never_overwritten(parent, tmp_path):
    before = (parent / "edgecls.json").read_bytes()
    p = run_edgecls("teach", parent, _dataset(tmp_path / "d", {"blue": 3}), "--out", parent)
    assert_one_line_error(p, "is the bundle being taught")
    assert (parent / "edgecls.json").read_bytes() == before


def test_verify_fails_on_a_tampered_head(parent, tmp_path):
    from edge_runtime.bundle.head import Prototypes

    out = tmp_path / "taught"
    assert run_edgecls("teach", parent, _dataset(tmp_path / "d", {"blue": 10}), "--out", out).returncode == 0
    protos = Prototypes.from_file(out / "head/prototypes.npz")
    protos.means[[0, 1]] = protos.means[[1, 0]]  # red and green swapped
    data = protos.to_bytes()
    (out / "head/prototypes.npz").write_bytes(data)
    p = run_edgecls("verify", out)  # the checksum catches it first
    assert_one_line_error(p, "head/prototypes.npz", "sha256")
    meta = _meta(out)  # ... and with the checksum forged too, the golden photos catch it
    meta["files"]["head/prototypes.npz"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    (out / "edgecls.json").write_text(json.dumps(meta))
    p = run_edgecls("verify", out)
    assert p.returncode == 1 and "MISMATCH" in p.stdout, p.stdout + p.stderr


def test_other_tools_still_read_the_model_with_its_feature_output(parent, tmp_path):
    """MediaPipe Tasks' ImageClassifier checks the metadata against the model's outputs: the
    features output has its own entry, and the scores stay the first head, with our labels."""
    pytest.importorskip("mediapipe.tasks.metadata.metadata_schema_py_generated",
                        reason="mediapipe is not installed (.ci/run installs it)")
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    photo = _photo(tmp_path / "green.png", "green", np.random.default_rng(8))
    for model in ("model.tflite", "model_float.tflite"):
        opts = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(parent / model)),
                                             max_results=4)
        with vision.ImageClassifier.create_from_options(opts) as clf:
            heads = clf.classify(mp.Image.create_from_file(str(photo))).classifications
        assert sorted(c.category_name for c in heads[0].categories) == sorted(CLASSES), model
        assert heads[0].categories[0].category_name == "green", model


@pytest.mark.gpu
def test_the_taught_head_runs_on_the_gpu_backend_too(parent, tmp_path):
    """On the gpu backend the float model's features feed the head: same top-1 as the int8 path."""
    import subprocess

    from conftest import CACHE, ROOT

    proc = subprocess.run([str(ROOT / "tests" / "tools" / "lavapipe.sh"), str(CACHE / "lavapipe")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"lavapipe setup failed (needs apt access and libvulkan1):\n{proc.stderr}"
    env = dict(line.split("=", 1) for line in proc.stdout.split())
    env["MESA_SHADER_CACHE_DIR"] = str(CACHE / "mesa-shader-cache")
    out = tmp_path / "taught"
    assert run_edgecls("teach", parent, _dataset(tmp_path / "d", {"blue": 10}), "--out", out).returncode == 0
    held = _dataset(tmp_path / "h", {c: 2 for c in CLASSES + ["blue"]}, seed=6)
    top1 = {}
    for backend in ("cpu", "gpu"):
        p = run_edgecls("classify", out, held, "--json", "--top-k", "1", "--backend", backend, env=env)
        assert p.returncode == 0, p.stderr[-2000:]
        top1[backend] = {Path(r["image"]).parent.name + "/" + Path(r["image"]).name: r["classes"][0]["label"]
                         for r in map(json.loads, p.stdout.splitlines())}
    assert top1["gpu"] == top1["cpu"] and all(k.split("/")[0] == v for k, v in top1["cpu"].items())


def test_float32_io_with_the_feature_output_converts_and_teaches(colours_bundle, tmp_path):
    """`convert --io float32` on a model with the feature output: both outputs get a DEQUANTIZE
    into a graph output, which is the float I/O conversion, not float compute (convert/quantize.py
    ``float_ops``); the bundle classifies as the uint8 one and can be taught."""
    from convert.run import Options, convert
    from edge_runtime import Classifier

    root = colours_bundle.parent
    opts = Options(labels=str(root / "labels.txt"), calibration_data=str(root / "data"), calibration=50, io="float32")
    f32 = convert(root / "colours.keras", tmp_path / "f32", opts, progress=lambda s: None).bundle
    photos = [_photo(tmp_path / f"{c}.png", c, np.random.default_rng(11)) for c in CLASSES]
    with Classifier(f32, backend="cpu") as clf:
        assert clf.input_spec.dtype == np.float32 and clf.has_features
    assert _top1(f32, photos) == _top1(colours_bundle, photos) == CLASSES
    out = tmp_path / "taught"
    p = run_edgecls("teach", f32, _dataset(tmp_path / "new", {"blue": 10}, seed=2), "--out", out)
    assert p.returncode == 0, p.stderr
    assert _top1(out, [_photo(tmp_path / "blue.png", "blue", np.random.default_rng(12))]) == ["blue"]
