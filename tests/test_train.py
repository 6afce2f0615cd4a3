"""Training: bad files are skipped and listed, the split is stable, a killed run resumes exactly,
MirroredStrategy trains. Small sizes (32 px, a few dozen real photos) so each takes seconds."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ASSETS, ROOT, assert_one_line_error, run_edgecls
from PIL import Image

from train import data

SIGN = ASSETS / "datasets" / "sign_language_digits"
WEIGHTS = ASSETS / "keras_weights" / "mobilenet_2_5_224_tf_no_top.h5"
SMALL = ["--arch", "mobilenet_v1", "--alpha", "0.25", "--size", "32", "--weights", str(WEIGHTS), "--batch", "8"]


def copy_photos(dest: Path, classes=("0", "1", "2"), per_class: int = 12) -> Path:
    for c in classes:
        (dest / c).mkdir(parents=True, exist_ok=True)
        for src in sorted((SIGN / c).iterdir())[:per_class]:
            shutil.copyfile(src, dest / c / src.name)
    return dest


@pytest.fixture
def messy(tmp_path) -> Path:
    """Real photos plus every kind of file a real photo folder turns up."""
    root = copy_photos(tmp_path / "messy")
    photo = sorted((SIGN / "0").iterdir())[20]
    raw = photo.read_bytes()
    (root / "0" / "truncated.jpg").write_bytes(raw[: len(raw) // 3])
    (root / "1" / "notes.jpg").write_text("shopping list: film, batteries\n")
    (root / "1" / "empty.png").write_bytes(b"")
    Image.new("RGB", (1, 1), (200, 10, 10)).save(root / "0" / "dot.png")
    rgb = Image.open(photo).convert("RGB")
    rgb.convert("CMYK").save(root / "1" / "cmyk.jpg")
    gray16 = (np.asarray(rgb.convert("L"), np.uint16) * 257).astype(np.uint16)
    Image.fromarray(gray16).save(root / "2" / "deep.png")  # mode I;16
    wide = rgb.crop((0, 20, 100, 80))  # 100 x 60, stored sideways: the viewer turns it upright
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    wide.save(root / "2" / "rotated.jpg", exif=exif)
    (root / "2" / "README.txt").write_text("not an image\n")
    (root / "empty_class").mkdir()
    return root


def test_scan_lists_every_unusable_file_with_its_reason(messy):
    ds = data.scan(messy)
    skipped = dict(ds.skipped)
    assert set(skipped) == {"0/truncated.jpg", "1/notes.jpg", "1/empty.png", "0/dot.png", "2/README.txt"}
    assert "truncated" in skipped["0/truncated.jpg"]
    assert "not an image" in skipped["1/notes.jpg"]
    assert "0 bytes" in skipped["1/empty.png"]
    assert "too small (1x1" in skipped["0/dot.png"]
    used = {s.rel for s in ds.samples}
    assert {"1/cmyk.jpg", "2/deep.png", "2/rotated.jpg"} <= used
    assert ds.classes == ["0", "1", "2"]
    assert any("empty_class" in w for w in ds.warnings)
    rotated = next(s for s in ds.samples if s.rel == "2/rotated.jpg")
    assert data.decode([rotated], 32, 32).shape == (1, 32, 32, 3)
    from edge_runtime.model.preprocess import load_image
    assert load_image(rotated.path).shape == (100, 60, 3)  # EXIF orientation applied: upright, portrait


def test_split_of_old_files_survives_added_photos(tmp_path):
    root = copy_photos(tmp_path / "d", per_class=30)
    before = {s.rel: s.split for s in data.scan(root).samples}
    assert set(before.values()) == {"train", "val", "test"}
    fp_before = data.scan(root).fingerprint
    for c in ("0", "1", "2"):
        for src in sorted((SIGN / c).iterdir())[30:45]:
            shutil.copyfile(src, root / c / src.name)
    after = data.scan(root)
    assert len(after.samples) == len(before) + 45
    assert {s.rel: s.split for s in after.samples if s.rel in before} == before
    assert after.fingerprint != fp_before
    # The split depends on the path inside the class folder only, not on where the dataset lives.
    moved = tmp_path / "elsewhere"
    shutil.copytree(root, moved)
    assert {s.rel: s.split for s in data.scan(moved).samples} == {s.rel: s.split for s in after.samples}


def test_imbalance_and_single_image_classes_warn(tmp_path):
    root = copy_photos(tmp_path / "d", classes=("0", "1"), per_class=20)
    (root / "2").mkdir()
    shutil.copyfile(sorted((SIGN / "2").iterdir())[0], root / "2" / "only.jpg")
    ds = data.scan(root)
    assert any("'2' has one image" in w for w in ds.warnings)
    assert any("imbalanced" in w for w in ds.warnings)


def test_train_on_messy_folder_reports_skipped_files(messy, tmp_path):
    out = tmp_path / "run"
    p = run_edgecls("train", messy, "--out", out, *SMALL, "--epochs", "2", "--fine-tune-epochs", "1", "--json")
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads(p.stdout.strip().splitlines()[-1])
    assert set(m["test"]["per_class"]) == {"0", "1", "2"}
    # The reported accuracy is the saved model's, recomputed here from the test list.
    from edge_runtime.model.contract import InputContract
    from edge_runtime.model.preprocess import load_image_for, resize
    from train._tf import keras

    c = InputContract.from_json(json.loads((out / "preprocessing.json").read_text()))
    rels = [r for r in (out / "splits" / "test.txt").read_text().split("\n") if r]
    x = np.stack([resize(load_image_for(messy / r, c.height, c.width, c.decode), c.height, c.width, c.resize)
                  for r in rels]).astype(np.float32)
    y = np.array([int(r.split("/")[0]) for r in rels])
    pred = keras.models.load_model(out / "model.keras", compile=False).predict(x, verbose=0).argmax(1)
    assert m["test"]["top1"] == pytest.approx(float(np.mean(pred == y)), abs=1e-4) and m["test"]["count"] == len(rels)
    assert (out / "labels.txt").read_text().split() == ["0", "1", "2"]
    skipped = (out / "splits" / "skipped.txt").read_text()
    for name in ("0/truncated.jpg", "1/notes.jpg", "1/empty.png", "0/dot.png"):
        assert name in skipped
    listed = set()
    for split in ("train", "val", "test"):
        listed |= set((out / "splits" / f"{split}.txt").read_text().split())
    assert {"1/cmyk.jpg", "2/deep.png", "2/rotated.jpg"} <= listed
    report = (out / "report.md").read_text()
    assert "0/truncated.jpg" in report and "empty_class" in report
    for f in ("model.keras", "metrics.json", "history.json", "curves.png", "confusion.png", "preprocessing.json",
              "dataset.json"):
        assert (out / f).stat().st_size > 0, f
    assert json.loads((out / "preprocessing.json").read_text())["resize"] == "bilinear"
    history = json.loads((out / "history.json").read_text())
    assert [(r["phase"], r["epoch"]) for r in history] == [(1, 1), (1, 2), (2, 1)]
    assert "skipped 0/truncated.jpg" in p.stderr
    # Quiet output: none of TensorFlow's C++ log lines (absl format, start-up notes), and one
    # plain progress line per epoch (not a terminal) with loss, accuracy and time left.
    native = [l for l in (p.stdout + p.stderr).splitlines() if NATIVE_LOG.match(l)]
    assert not native, native
    epochs = [l for l in p.stderr.splitlines() if l.startswith("Epoch ")]
    assert [l.split()[1] for l in epochs] == ["1/2", "2/2", "1/1"], p.stderr
    assert all("loss " in l and "accuracy " in l and " left" in l and "\r" not in l for l in epochs), epochs


# What TensorFlow, XLA and absl log from C++ ("E0000 00:00:1796177889.958724    7644 node_def_util.cc:682] ..."),
# and the notes TensorFlow prints on every start.
NATIVE_LOG = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:[\d.]+\s+\d+ \S+:\d+\]|WARNING: All log messages before absl|"
                        r"oneDNN custom operations|To enable the following instructions|This TensorFlow binary)")


def test_train_refuses_to_overwrite_a_run_and_explains_resume(tmp_path):
    root = copy_photos(tmp_path / "d", per_class=4)
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.keras").write_bytes(b"precious")
    p = run_edgecls("train", root, "--out", out, *SMALL)
    assert_one_line_error(p, str(out), "--resume")
    assert (out / "model.keras").read_bytes() == b"precious"
    p = run_edgecls("train", tmp_path / "nope", "--out", tmp_path / "r2", *SMALL)
    assert_one_line_error(p, "nope", "sub-folder")
    p = run_edgecls("train", root, "--out", tmp_path / "r3", *SMALL[:-4], "--weights", tmp_path / "missing.h5")
    assert_one_line_error(p, "missing.h5")


def test_a_typo_in_a_path_leaves_no_run_behind(tmp_path):
    """Issue 28 item 24: the failed start left config.json, the corrected command was told to
    --resume, and --resume reloaded the typo."""
    root = copy_photos(tmp_path / "photos", per_class=12)
    out = tmp_path / "run"
    p = run_edgecls("train", tmp_path / "phtos", "--out", out, *SMALL)
    assert_one_line_error(p, "phtos", "sub-folder")
    assert not out.exists()
    p = run_edgecls("train", root, "--out", out, *SMALL[:-4], "--weights", tmp_path / "mising.h5")
    assert_one_line_error(p, "mising.h5")
    assert not out.exists()
    # A folder an older version poisoned this way (config.json alone) is not a run: the corrected
    # command starts over it, with its own settings.
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"data": str(tmp_path / "phtos")}))
    p = run_edgecls("train", root, "--out", out, *SMALL, "--epochs", "1", "--fine-tune-epochs", "0")
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((out / "config.json").read_text())["data"] == str(root)
    assert json.loads((out / "metrics.json").read_text())["test"]["count"] > 0


def test_nan_loss_says_at_which_epoch_and_keeps_the_last_good_checkpoint(tmp_path):
    """Issue 28 item 12: a NaN loss ended in a FileNotFoundError traceback."""
    root = copy_photos(tmp_path / "d", per_class=12)
    out = tmp_path / "run"
    p = run_edgecls("train", root, "--out", out, *SMALL, "--epochs", "2", "--fine-tune-epochs", "2",
                    "--fine-tune-lr", "1e38", "--patience", "50")
    assert_one_line_error(p, "the loss became NaN at epoch 1 (phase 2)", "last good checkpoint (phase 1 done)",
                          "--fine-tune-lr")
    latest = (out / "checkpoint" / "LATEST").read_text().strip()
    assert latest == "e-2-0000"  # the end of phase 1, committed before phase 2 diverged
    from train._tf import keras

    kept = keras.models.load_model(out / "checkpoint" / latest / "model.keras", compile=False)
    assert all(np.isfinite(w).all() for w in kept.get_weights())
    assert not (out / "model.keras").exists()


def _phase_epochs(history: list[dict]) -> list[tuple[int, int]]:
    return [(r["phase"], r["epoch"]) for r in history]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_run_resumes_with_every_epoch_done_once(tmp_path, sig):
    root = copy_photos(tmp_path / "d", per_class=24)
    out = tmp_path / "run"
    args = ["train", root, "--out", out, *SMALL, "--epochs", "3", "--fine-tune-epochs", "4", "--patience", "50"]
    cmd = [sys.executable, "-m", "edge_runtime.cli", *map(str, args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    latest = out / "checkpoint" / "LATEST"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and latest.read_text().strip() == "e-2-0001":
            break  # phase 2's first epoch is committed; the second is under way
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted:\n" + proc.stdout.read()
    proc.send_signal(sig)
    first_out = proc.communicate(timeout=120)[0]
    if sig == signal.SIGINT:
        assert proc.returncode == 130, first_out[-2000:]
        assert "--resume" in first_out and "Traceback" not in first_out
    assert not (out / "model.keras").exists()
    done = json.loads((out / "checkpoint" / latest.read_text().strip() / "state.json").read_text())
    assert (done["phase"], done["epoch"]) >= (2, 1)

    p = run_edgecls("train", root, "--out", out, "--resume")
    assert p.returncode == 0, p.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    assert _phase_epochs(history) == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3), (2, 4)]
    # The resumed process ran only the epochs that were not finished.
    ran = [line.split()[1] for line in p.stdout.splitlines() + p.stderr.splitlines() if line.startswith("Epoch ")]
    assert ran == [f"{e}/4" for e in range(done["epoch"] + 1, 5)], ran
    assert (out / "model.keras").exists() and json.loads((out / "metrics.json").read_text())["test"]["count"] > 0


def test_checkpoint_every_commits_the_last_epoch_of_each_phase_with_the_whole_history(tmp_path):
    """--checkpoint-every S: fewer commits (the demo's epochs take about as long as a commit), yet
    each phase's last epoch is committed, with every epoch's history row, and --resume finds the
    run finished."""
    root = copy_photos(tmp_path / "d", per_class=10)
    out = tmp_path / "run"
    script = f"""
import json
import train.fit as fit
names = []
commit = fit.commit_checkpoint
def spy(ckpt_dir, state, model, best):
    names.append(f"{{state.phase}}-{{state.epoch}}")
    return commit(ckpt_dir, state, model, best)
fit.commit_checkpoint = spy
from train.run import TrainConfig, train
cfg = TrainConfig(data={str(root)!r}, size=32, weights={str(WEIGHTS)!r}, epochs=3, fine_tune_epochs=3, batch=8,
                  patience=50, checkpoint_every=3600)
train({str(out)!r}, cfg)
print(json.dumps(names))
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    # phase P epoch E; "P-0" is the start of a phase (the phase before it ended)
    assert json.loads(p.stdout.strip().splitlines()[-1]) == ["1-3", "2-0", "2-3", "3-0"]
    latest = (out / "checkpoint" / "LATEST").read_text().strip()
    state = json.loads((out / "checkpoint" / latest / "state.json").read_text())
    assert [(r["phase"], r["epoch"]) for r in state["history"]] == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    assert (out / "model.keras").exists()
    r = run_edgecls("train", root, "--out", out, "--resume")
    assert r.returncode == 0 and not [l for l in r.stdout.splitlines() + r.stderr.splitlines() if l.startswith("Epoch ")]


def test_mirrored_strategy_over_two_logical_cpus_trains(tmp_path):
    root = copy_photos(tmp_path / "d", per_class=10)
    out = tmp_path / "run"
    script = f"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
from train.run import TrainConfig, train
cfg = TrainConfig(data={str(root)!r}, size=32, weights={str(WEIGHTS)!r}, epochs=1, fine_tune_epochs=1, batch=8)
m = train({str(out)!r}, cfg, strategy=strategy)
print(json.dumps({{"replicas": strategy.num_replicas_in_sync, "test": m["test"]["top1"]}}))
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["replicas"] == 2
    assert [(h["phase"], h["epoch"]) for h in json.loads((out / "history.json").read_text())] == [(1, 1), (2, 1)]


@pytest.mark.parametrize("command", ["train", "convert", "demo"])
def test_workstation_commands_without_tensorflow_name_the_extra(tmp_path, command):
    """A runtime-only install (a Pi): the workstation commands say what to install, no traceback."""
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "tensorflow.py").write_text("raise ImportError('No module named tensorflow')\n")
    env = {"PYTHONPATH": f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    root = copy_photos(tmp_path / "d", per_class=2)
    args = {"train": [root, "--out", tmp_path / "run"], "convert": [tmp_path, "--out", tmp_path / "b"],
            "demo": ["--out", tmp_path / "demo"]}[command]
    p = run_edgecls(command, *args, env=env)
    assert_one_line_error(p, "edgecls[train]")


def test_time_left_after_the_first_epoch_leaves_out_the_tracing(monkeypatch):
    """The first step also traces the graphs (about a tenth of the demo): the estimate after epoch 1
    goes by the later steps' pace plus the validation, not by epoch 1's wall time."""
    import io
    import types

    from train import fit

    clock = [100.0]
    monkeypatch.setattr(fit, "time", types.SimpleNamespace(perf_counter=lambda: clock[0], monotonic=time.monotonic))
    p = fit._Progress(stream=io.StringIO())
    p.set_params({"epochs": 5, "steps": 10})
    p.on_train_begin()
    p.on_epoch_begin(0)
    for b in range(10):
        clock[0] += 10.0 if b == 0 else 0.1  # 10 s to trace, then 0.1 s a step
        p.on_train_batch_end(b, {"loss": 1.0})
    clock[0] += 0.5  # validation
    p.on_epoch_end(0, {"loss": 1.0, "accuracy": 0.5})
    assert p._left() == pytest.approx(4 * (10 * 0.1 + 0.5))  # not 4 x 11.4 s
    assert "Epoch 1/5  11.4 s" in p.stream.getvalue() and "6 s left" in p.stream.getvalue()
