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
from edge_runtime.live.frames import Frame
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
    # 12 uncertain frames, 4 scenes, 2 a minute: the first blend of the first two scenes (frame 4, a
    # near-duplicate of 3, gives its place back before 5 is judged), whatever the saving thread's pace
    assert len(files) == 2 and saved == [3, 9], saved
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


def test_what_a_file_yields_within_the_rate_does_not_depend_on_the_disks_pace(tmp_path, monkeypatch):
    """A file's frames (``wait``) with 2 a minute, each blend held for 3 frames: the queued frames hold
    the rate's places until the saving thread judges them, so on a slow disk every later blend was
    counted over the rate and only the first scene kept. A file's frame now waits for them: a
    near-duplicate gives its place back, and the same two scenes are kept at any pace."""
    import time

    real = mining.write_new
    kept = {}
    for delay in (0.0, 0.3):
        monkeypatch.setattr(mining, "write_new", lambda *a, d=delay, **k: (time.sleep(d), real(*a, **k))[1])
        m = mining.Miner(tmp_path / f"m{delay}", per_minute=2, wait=True)
        sure, unsure = [Class(1, "a", 0.8), Class(2, "b", 0.1)], [Class(1, "a", 0.3), Class(2, "b", 0.2)]
        for n in range(24):
            scene = n % 6 >= 3
            m.observe(Frame(blend(n // 6) if scene else photo("parrot.jpg"), float(n), n), unsure if scene else sure)
        stats = m.close()
        index = (tmp_path / f"m{delay}" / "index.jsonl").read_text().splitlines()
        kept[delay] = [json.loads(line)["frame"] for line in index]
        assert stats.saved == 2 and stats.rate_limited > 0, (delay, stats)
    assert kept[0.0] == kept[0.3] == [3, 9], kept


def _until(cond, timeout: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def test_a_fault_in_the_saving_thread_never_blocks_the_loop(tmp_path):
    """Issue 28.5: a frame the saving thread cannot handle (here a float picture Pillow refuses)
    used to kill it; a file's frames (``wait``) then blocked on the full queue for ever. Now saving
    stops with one message and every observe and close returns."""
    import threading
    import time

    said: list[str] = []
    m = mining.Miner(tmp_path / "m", per_minute=1000, dup_level=0.0, log=said.append, wait=True)
    unsure = [Class(1, "a", 0.3), Class(2, "b", 0.2)]
    bad = Frame(np.zeros((32, 32, 3), np.float64), 0.0, 0)  # not uint8: Image.fromarray raises TypeError
    frames = [bad] + [Frame(blend(i % 8), float(i), i) for i in range(1, 3 * mining.QUEUE)]
    feeder = threading.Thread(target=lambda: [m.observe(f, unsure) for f in frames], daemon=True)
    feeder.start()
    feeder.join(10)
    assert not feeder.is_alive(), "observe blocked on a saving thread that was gone"
    t = time.perf_counter()
    stats = m.close(timeout=5)
    assert time.perf_counter() - t < 5
    assert len(said) == 1 and "saving a frame failed (TypeError" in said[0], said
    assert stats.saved == 0 and stats.stopped and not list((tmp_path / "m").glob("*.jpg"))


def test_saving_resumes_once_the_folder_is_emptied(tmp_path):
    """Issue 28.6: after --save-max-mb stopped saving, ``edgecls pull --delete-after`` empties the
    folder; the Miner measures it again and resumes, saying so once each way."""
    said: list[str] = []
    out = tmp_path / "m"
    m = mining.Miner(out, per_minute=1000, dup_level=0.0, max_mb=0.05, log=said.append, wait=True, recheck=0.2)
    unsure = [Class(1, "a", 0.3), Class(2, "b", 0.2)]
    n = 0
    while not said and n < 40:
        m.observe(Frame(blend(n % 8), float(n), n), unsure)
        n += 1
        _until(lambda: m.queue.empty() and m.pending == 0, 5)
    assert len(said) == 1 and "reached --save-max-mb" in said[0], said
    before = m.stats.saved
    assert before >= 2 and not m.observe(Frame(blend(3), 99.0, 99), unsure)  # stopped: nothing queued
    for f in out.glob("*.jpg"):  # what pull --delete-after does with the pulled pictures
        f.unlink()
    (out / mining.INDEX).unlink()
    assert _until(lambda: len(said) == 2, 5), said
    assert "resumed" in said[1] and not m.stats.stopped
    assert m.observe(Frame(blend(5), 100.0, 100), unsure)
    stats = m.close()
    assert stats.saved == before + 1 and stats.resumed == 1 and len(said) == 2
    index = [json.loads(l) for l in (out / mining.INDEX).read_text().splitlines()]
    assert [r["frame"] for r in index] == [100] and [r["file"] for r in index] == [f.name for f in out.glob("*.jpg")]
