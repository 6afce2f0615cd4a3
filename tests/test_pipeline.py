"""Folders at the speed of the model: the next images decode while the current one runs, and
what a user sees is what the sequential loop gave - the same classes and scores, in the same
order, a bad file skipped with its message, and Ctrl-C ending cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CORAL, json_lines, run_edgecls
from edge_runtime.bundle.classifier import Classifier
from edge_runtime.errors import EdgeclsError, ImageError
from edge_runtime.model.pipeline import prefetch

MODEL = CORAL / "mobilenet_v1_0.25_128_quant.tflite"
LABELS = CORAL / "imagenet_labels.txt"


def _photos(folder: Path, n: int) -> list[Path]:
    """``n`` distinct 320x240 JPEGs cut from Coral's photos."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = [np.asarray(Image.open(CORAL / f).convert("RGB")) for f in ("cat.bmp", "bird.bmp", "parrot.jpg")]
    paths = []
    for i in range(n):
        src = sources[i % len(sources)]
        h, w = src.shape[:2]
        y, x = (i * 7) % max(1, h // 3), (i * 11) % max(1, w // 3)
        img = Image.fromarray(src[y:y + 2 * h // 3, x:x + 2 * w // 3]).resize((320, 240))
        paths.append(folder / f"{i:03d}.jpg")
        img.save(paths[-1], quality=90)
    return paths


def test_pipelined_results_equal_sequential_in_order(tmp_path):
    paths = _photos(tmp_path / "photos", 24)
    with Classifier(MODEL, labels=LABELS, backend="cpu", threads=1) as clf:
        sequential = [clf.classify(p, top=5) for p in paths]
        pipelined = list(clf.classify_each(paths, top=5, depth=4, workers=2))
    assert [img for img, _ in pipelined] == paths  # order kept
    for s, (_, r) in zip(sequential, pipelined):
        assert not isinstance(r, Exception)
        assert [(c.index, c.score) for c in r.classes] == [(c.index, c.score) for c in s.classes]
        assert np.array_equal(r.raw, s.raw)
        assert r.image == s.image


def test_order_kept_when_earlier_items_are_slower():
    def slow_first(i: int) -> int:
        time.sleep(0.05 if i % 3 == 0 else 0.0)
        return i * i

    out = list(prefetch(range(20), slow_first, depth=5, workers=3))
    assert out == [(i, i * i) for i in range(20)]


def test_prefetch_is_bounded():
    started: list[int] = []
    gate = threading.Event()

    def prepare(i: int) -> int:
        started.append(i)
        gate.wait(5)
        return i

    it = prefetch(range(100), prepare, depth=3, workers=2)
    threading.Timer(0.3, gate.set).start()
    assert next(it) == (0, 0)
    assert len(started) <= 4  # the three ahead, and one refilled after the first came out
    it.close()


def test_an_error_other_than_skip_is_raised_in_order():
    def prepare(i: int) -> int:
        if i == 3:
            raise RuntimeError("boom")
        return i

    got = []
    with pytest.raises(RuntimeError, match="boom"):
        for item, _ in prefetch(range(10), prepare, depth=4):
            got.append(item)
    assert got == [0, 1, 2]


def test_stopping_early_leaves_no_thread():
    before = {t.ident for t in threading.enumerate()}
    it = prefetch(range(1000), lambda i: time.sleep(0.01) or i, depth=4, workers=2)
    for item, _ in it:
        if item == 5:
            break
    it.close()
    left = [t for t in threading.enumerate() if t.ident not in before]
    assert not left, left


def test_a_bad_file_in_the_middle_is_skipped_with_its_message(tmp_path):
    folder = tmp_path / "photos"
    paths = _photos(folder, 6)
    bad = folder / "002b.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with Classifier(MODEL, labels=LABELS, backend="cpu") as clf:
        out = list(clf.classify_each(sorted(folder.iterdir())))
        assert [img for img, _ in out] == sorted(folder.iterdir())
        errors = [(img, r) for img, r in out if isinstance(r, EdgeclsError)]
        assert [img for img, _ in errors] == [bad]
        assert isinstance(errors[0][1], ImageError) and str(bad) in str(errors[0][1])

    proc = run_edgecls("classify", MODEL, "--labels", LABELS, folder, "--json", "--backend", "cpu")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = json_lines(proc.stdout)
    assert [line["image"] for line in lines] == [str(p) for p in sorted(folder.iterdir())]
    assert "error" in lines[3] and str(bad) in lines[3]["error"]
    assert all("classes" in line for i, line in enumerate(lines) if i != 3)
    assert "1 image(s) could not be classified" in proc.stderr
    assert paths[0].exists()


def test_a_folder_leaves_the_warning_filters_as_it_found_them(tmp_path):
    """Decoding in two threads at once must not leave warning filters behind (each thread's
    catch_warnings restored the other's, and the caller's own: after a folder the process ignored
    or raised every warning); and a decompression bomb among the photos is still that photo's error."""
    import warnings

    folder = tmp_path / "photos"
    _photos(folder, 40)
    Image.new("1", (12000, 12000)).save(folder / "020b.png", optimize=True)  # 144 M pixels from a few KB
    filters, show = list(warnings.filters), warnings.showwarning
    with Classifier(MODEL, labels=LABELS, backend="cpu", threads=1) as clf:
        for _ in range(3):
            out = []
            for item in clf.classify_each(sorted(folder.iterdir()), depth=4, workers=2):
                with warnings.catch_warnings():  # as many libraries do inside their calls
                    warnings.simplefilter("ignore")
                    time.sleep(0.002)
                out.append(item)
            bad = [(img.name, str(r)) for img, r in out if isinstance(r, EdgeclsError)]
            assert [name for name, _ in bad] == ["020b.png"] and "decompression bomb" in bad[0][1]
            assert warnings.filters == filters and warnings.showwarning is show


def test_cli_output_equals_the_sequential_path(tmp_path):
    paths = _photos(tmp_path / "photos", 12)
    proc = run_edgecls("classify", MODEL, "--labels", LABELS, tmp_path / "photos", "--json", "--backend", "cpu",
                       "--top-k", "3")
    assert proc.returncode == 0, proc.stderr
    got = [[(c["index"], c["score"]) for c in line["classes"]] for line in json_lines(proc.stdout)]
    with Classifier(MODEL, labels=LABELS, backend="cpu") as clf:
        want = [[(c.index, round(c.score, 6)) for c in clf.classify(p, top=3).classes] for p in paths]
    assert got == want


def test_ctrl_c_mid_folder_ends_cleanly(tmp_path):
    folder = tmp_path / "photos"
    paths = _photos(folder, 8)
    for i in range(400):  # a long folder: hard links, so it costs no disk
        (folder / f"z{i:04d}.jpg").hardlink_to(paths[i % len(paths)])
    proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "classify", str(MODEL), "--labels",
                             str(LABELS), str(folder), "--backend", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for _ in range(5):  # a few results out: the pipeline is running
        assert proc.stdout.readline(), proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)  # a hung preparing thread would keep it alive
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "edgecls: interrupted" in err
    assert len(out.splitlines()) + 5 < len(paths) + 400  # it stopped, rather than finishing the folder


def test_one_image_starts_no_thread():
    seen: list[str] = []

    def prepare(i: int) -> int:
        seen.append(threading.current_thread().name)
        return i

    assert list(prefetch([7], prepare)) == [(7, 7)]
    assert seen == [threading.current_thread().name]  # classify one.jpg: prepared in the caller's thread


def test_calibration_and_gate_pixels_equal_the_sequential_decode(tmp_path):
    """convert's calibration and test photos (train.data.decode) decode ahead in threads: same pixels, in order."""
    from edge_runtime.model.preprocess import load_image_for, resize
    from train import data

    paths = _photos(tmp_path / "photos", 10)
    samples = [data.Sample(p, p.name, 0, "test") for p in paths]
    got = data.decode(samples, 96, 128, "bilinear", decode_mode="draft")
    want = np.stack([resize(load_image_for(str(p), 96, 128, "draft"), 96, 128, "bilinear") for p in paths])
    assert np.array_equal(got, want)
