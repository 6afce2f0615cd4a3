"""`edgecls camera --save-uncertain`: on a video that alternates a confident photo (Coral's parrot,
macaw 0.80) with ambiguous blends of the cat and the parrot (top-1 below 0.25), only the blends are
kept, once per still scene, within the rate, until the size limit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CORAL, run_edgecls
from PIL import Image

from edge_runtime.dataset import mining
from edge_runtime.dataset.files import safe_label
from edge_runtime.live.sources import Frame
from edge_runtime.model.postprocess import Class

MODEL = CORAL / "mobilenet_v1_0.25_128_quant.tflite"
LABELS = CORAL / "imagenet_labels.txt"
SEGMENTS = 4  # ambiguous scenes, each held for 3 frames, each after 3 confident frames


def photo(name: str) -> np.ndarray:
    return np.asarray(Image.open(CORAL / name).convert("RGB").resize((320, 240), Image.BILINEAR))


def blend(k: int) -> np.ndarray:
    return np.roll((0.5 * photo("cat.bmp") + 0.5 * photo("parrot.jpg")).astype(np.uint8), 40 * k, axis=1)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    cv2 = pytest.importorskip("cv2")
    path = tmp_path_factory.mktemp("video") / "alternating.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for k in range(SEGMENTS):
        for frame in [photo("parrot.jpg")] * 3 + [blend(k)] * 3:
            w.write(np.ascontiguousarray(frame[:, :, ::-1]))
    w.release()
    return path


def camera(video: Path, out: Path, *extra: str):
    p = run_edgecls("camera", MODEL, "--labels", LABELS, "--source", video, "--backend", "cpu", "--json",
                    "--save-uncertain", out, *extra)
    assert p.returncode == 0, p.stderr
    index = [json.loads(l) for l in (out / "index.jsonl").read_text().splitlines()] if (out / "index.jsonl").exists() else []
    return p, index, sorted(x.name for x in out.glob("*.jpg"))


def test_ambiguous_frames_are_saved_once_per_scene_with_label_and_score(video, tmp_path):
    p, index, files = camera(video, tmp_path / "mined", "--save-per-minute", "100")
    frames = [json.loads(l) for l in p.stdout.splitlines()][:-1]
    ambiguous = [f["frame"] for f in frames if f["classes"][0]["score"] < 0.6]
    assert ambiguous == [6 * k + i for k in range(SEGMENTS) for i in (3, 4, 5)]  # the blends, and only they
    assert [r["frame"] for r in index] == [6 * k + 3 for k in range(SEGMENTS)]  # the first of each still scene
    assert [r["file"] for r in index] == files  # names sort by time, one file per index line
    for r in index:
        top = frames[r["frame"]]["classes"]
        assert r["label"] == top[0]["label"] and r["score"] == top[0]["score"] and len(r["top_k"]) >= 2
        assert r["file"].endswith(f"_{safe_label(r['label'])}_{r['score']:.3f}.jpg")
        with Image.open(tmp_path / "mined" / r["file"]) as im:
            assert im.size == (320, 240)  # the full frame
    assert "4 uncertain frames saved" in p.stderr and "8 near-duplicates" in p.stderr


def test_rate_limit_holds(video, tmp_path):
    p, index, files = camera(video, tmp_path / "mined", "--save-per-minute", "2")
    saved = [r["frame"] for r in index]
    assert len(saved) == len(files) == 2 and saved[0] == 3  # 12 uncertain frames, 4 scenes, 2 a minute
    # blends of two different scenes (which scene comes second depends on the saving thread's pace)
    assert all(f % 6 >= 3 for f in saved) and len({f // 6 for f in saved}) == 2, saved
    assert "over the rate" in p.stderr


def test_size_limit_stops_saving_and_says_so_once(video, tmp_path):
    p, index, files = camera(video, tmp_path / "mined", "--save-per-minute", "100", "--save-max-mb", "0.001")
    assert len(files) == len(index) == 1  # the first frame passes the 1 kB mark; nothing after it
    assert p.stderr.count("reached --save-max-mb") == 1, p.stderr


def test_low_disk_stops_saving(tmp_path):
    """The 10 % free rule, with the threshold above what this disk has free."""
    frame = Frame(blend(0), 0.0, 0)
    said: list[str] = []
    m = mining.Miner(tmp_path / "m", min_free=1.01, log=said.append)
    unsure = [Class(1, "a", 0.3), Class(2, "b", 0.2)]
    m.observe(frame, unsure)
    m.observe(Frame(blend(1), 0.1, 1), unsure)
    stats = m.close()
    assert stats.saved == 0 and len(said) == 1 and "free" in said[0]
    assert not list((tmp_path / "m").glob("*.jpg"))


def test_observe_does_not_wait_for_the_disk(tmp_path, monkeypatch):
    """A slow disk: observe returns at once, frames beyond the queue are dropped and counted."""
    import threading
    import time

    gate = threading.Event()
    real = mining.write_new
    monkeypatch.setattr(mining, "write_new", lambda *a, **k: (gate.wait(10), real(*a, **k))[1])
    m = mining.Miner(tmp_path / "m", per_minute=1000, dup_level=0.0)
    unsure = [Class(1, "a", 0.3), Class(2, "b", 0.2)]
    frames = [Frame(blend(i % 8), float(i), i) for i in range(30)]
    t = time.perf_counter()
    for f in frames:
        m.observe(f, unsure)
    took = time.perf_counter() - t
    gate.set()
    stats = m.close()
    assert took < 0.5, took
    assert stats.dropped >= 30 - mining.QUEUE - 1 and stats.saved == 30 - stats.dropped
