"""The device side on emulated Raspberry Pi OS arm64 under qemu-user, for each release Raspberry
Pi OS is based on (bookworm: Debian 12, Python 3.11; trixie: Debian 13, Python 3.13), as a Pi 4
(Cortex-A72), a Pi 5 (Cortex-A76) and a Pi Zero 2 W (Cortex-A53), with ai-edge-litert (numpy 2)
and, on bookworm, tflite-runtime 2.14 (numpy<2; it has no cp313 wheel). The runtime is installed
from a wheel built from this checkout; and 32-bit Raspberry Pi OS (bookworm-armhf, qemu-arm):
tflite-runtime's armv7l wheel over Debian's numpy and Pillow. Test ids name the release, the Pi
and the interpreter."""

from __future__ import annotations

import json
from itertools import groupby
from pathlib import Path

import pytest
from arm64 import ARMHF, PYTHONS, RELEASES, du, targets
from conftest import (
    CORAL,
    CORAL_RESIZE,
    GOLDEN,
    SIGN_DATA,
    assert_golden,
    json_lines,
    run_edgecls,
)

pytestmark = pytest.mark.arm64
PACKAGE = {"litert": "ai_edge_litert", "tflite": "tflite_runtime"}
BOARDS = {"pi4": "Raspberry Pi 4", "pi5": "Raspberry Pi 5", "zero2": "Raspberry Pi Zero 2 W"}
# The Zero 2 W (Cortex-A53, 512 MB) runs the golden rows with ai-edge-litert; its memory is
# measured by benchmarks/pi_memory.py.
GOLDEN_TARGETS = targets() + targets(boards=("zero2",), interpreters=("litert",), releases=("trixie",))
# 32-bit Raspberry Pi OS: tflite-runtime's armv7l wheel over Debian's armhf numpy and Pillow.
ARMHF_TARGETS = targets(boards=("pi4",), interpreters=("tflite",), releases=(ARMHF,))


def _scores_within_one_step(mine: list[dict], theirs: list[dict]) -> None:
    """Each image's top-1 the same, and every class both list scored within one int8 output step
    (1/256 of a probability) on arm64 and x86."""
    assert [r["classes"][0]["index"] for r in mine] == [r["classes"][0]["index"] for r in theirs]
    for a, b in zip(mine, theirs):
        got, want = ({c["index"]: c["score"] for c in r["classes"]} for r in (a, b))
        assert all(abs(got[i] - want[i]) <= 1 / 256 + 1e-6 for i in got.keys() & want.keys()), (a, b)


def _ok(p) -> None:
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"


@pytest.mark.parametrize("release,pi,interpreter", GOLDEN_TARGETS + ARMHF_TARGETS)
def test_coral_golden_rows(arm64s, release, pi, interpreter):
    arm = arm64s(release)
    for model, rows in groupby(GOLDEN, key=lambda r: (r[0], r[5])):
        rows = list(rows)
        images = [CORAL / r[1] for r in rows]
        p = arm.run("classify", CORAL / f"{model[0]}.tflite", "--labels", CORAL / model[1], *images, "--json",
                    "--top-k", "5", "--resize", CORAL_RESIZE, "--backend", "cpu", pi=pi, interpreter=interpreter)
        _ok(p)
        assert f"{PACKAGE[interpreter]} " in p.stderr, p.stderr
        results = json_lines(p.stdout)
        assert len(results) == len(rows), p.stdout  # one line per image: zip must not drop a row unseen
        for r, result in zip(rows, results):
            assert Path(result["image"]).name == r[1], (r, result["image"])  # the row's own photo
            _, _, index, k, min_score, _ = r
            assert_golden(result["classes"], index, k, min_score)


@pytest.mark.parametrize("release,pi,interpreter", targets() + ARMHF_TARGETS)
def test_bundle_classifies_as_on_x86(arm64s, sign_run, sign_bundle, release, pi, interpreter):
    arm = arm64s(release)
    rels = [r for r in (sign_run / "splits" / "test.txt").read_text().split("\n") if r][::8]
    files = [SIGN_DATA / r for r in rels]
    x86 = run_edgecls("classify", sign_bundle, *files, "--json", "--top-k", "5", "--backend", "cpu")
    _ok(x86)
    p = arm.run("classify", sign_bundle, *files, "--json", "--top-k", "5", "--backend", "cpu", pi=pi,
                interpreter=interpreter)
    _ok(p)  # tflite-runtime 2.14 does not crash: dense layers are per tensor
    mine, theirs = json_lines(p.stdout), json_lines(x86.stdout)
    assert len(mine) == len(theirs) == len(files), (len(mine), len(theirs), len(files))
    assert [r["classes"][0]["index"] for r in mine] == [r["classes"][0]["index"] for r in theirs]
    v = arm.run("verify", sign_bundle, "--backend", "cpu", "--json", pi=pi, interpreter=interpreter)
    report = json.loads(v.stdout)
    if interpreter == "litert":
        # XNNPACK's int8 kernels give x86's bits on arm64 but for a rare result it requantizes one
        # step apart (one sign model in a few CI runs, one golden photo of ten): scores within that.
        _scores_within_one_step(mine, theirs)
        _ok(v)
        assert report["ok"] and report["mode"].startswith("bit-exact, or within one int8 step"), report
        assert sum(ph["exact"] for ph in report["photos"]) >= len(report["photos"]) - 1, report
    else:
        # tflite-runtime's own int8 kernels: same input tensors, outputs within the stated tolerance.
        _ok(v)
        assert report["ok"] and report["mode"].startswith("same input tensor"), report


def test_per_channel_dense_is_refused_before_invoke_on_tflite_runtime(arm64s, sign_run, tmp_path):
    arm = arm64s("bookworm")  # tflite-runtime: bookworm only
    pc = tmp_path / "per-channel"
    c = run_edgecls("convert", sign_run, "--out", pc, "--per-channel-dense", "--calibration", "100")
    _ok(c)
    photo = pc / "golden" / sorted(f.name for f in (pc / "golden").iterdir())[0]
    p = arm.run("classify", pc, photo, "--backend", "cpu", interpreter="tflite")
    assert p.returncode == 1, f"exit {p.returncode} (a segfault is -11)\n{p.stderr[-2000:]}"
    err = [l for l in p.stderr.splitlines() if l.startswith("edgecls: error:")]
    assert len(err) == 1 and "per channel" in err[0] and "edgecls convert" in err[0] and "ai-edge-litert" in err[0]
    _ok(arm.run("classify", pc, photo, "--backend", "cpu", interpreter="litert"))  # LiteRT runs it fine


@pytest.mark.parametrize("release,pi,interpreter", targets(interpreters=("litert",), releases=("bookworm",)) +
                         targets(boards=("zero2",), interpreters=("litert",), releases=("trixie",)))
def test_bench_and_doctor_report_an_aarch64_pi(arm64s, sign_bundle, tmp_path, release, pi, interpreter):
    arm = arm64s(release)
    out = tmp_path / "bench.json"
    # --in-process: qemu-user cannot start an ARM child process (a child execs the host's binary of
    # that path, when there is one), and bench runs each configuration in a child of its own.
    b = arm.run("bench", sign_bundle, "--runs", "5", "--warmup", "1", "--in-process", "--save", out, pi=pi)
    _ok(b)
    result = json.loads(out.read_text())
    (r,) = result["results"]
    assert result["machine"]["arch"] == "aarch64" and BOARDS[pi] in result["machine"]["board"]
    assert r["status"] == "ok" and r["backend"] == "cpu" and r["invoke_ms"]["count"] == 5
    # The emulated Pi's results and this machine's, merged into one table.
    x86 = tmp_path / "x86.json"
    assert run_edgecls("bench", sign_bundle, "--runs", "5", "--save", x86).returncode == 0
    c = run_edgecls("bench", "compare", x86, out, "--markdown", tmp_path / "both.md")
    _ok(c)
    rows = [l for l in c.stdout.splitlines() if "bundle" in l]
    assert len(rows) == 2 and rows[1].startswith(BOARDS[pi]) and "x86_64" in rows[0]
    d = arm.run("doctor", "--json", pi=pi)
    assert d.returncode in (0, 1), d.stderr
    doc = json.loads(d.stdout)
    text = json.dumps(doc)
    assert "aarch64" in text and BOARDS[pi] in text
    assert f"Python {PYTHONS[release]}" in text or PYTHONS[release] in text


@pytest.mark.parametrize("release", RELEASES)
def test_runtime_install_has_no_tensorflow(arm64s, release):
    arm = arm64s(release)
    for site in (arm.edgecls, arm.site("litert")):
        names = {p.name.lower() for p in site.iterdir()}
        assert not any(n.startswith(("tensorflow", "keras", "tf_keras")) for n in names), names
    p = arm.run("import edge_runtime, sys; print(sorted(m for m in sys.modules if m.startswith(('tensorflow', 'keras'))))",
                module="", python_args=("-c",))
    _ok(p)
    assert p.stdout.strip() == "[]"
    assert du(arm.edgecls) < 4_000_000  # pure Python: 2.6 MB with bytecode (rooms, pages, the metadata schema code)


@pytest.mark.parametrize("release,pi,interpreter", targets(boards=("pi4",), interpreters=("litert",)))
def test_teach_on_the_pi_gives_the_x86_head_and_the_same_scores(arm64s, sign_run, sign_bundle, tmp_path, release,
                                                                 pi, interpreter):
    """`edgecls teach` under the emulated Pi (no TensorFlow there) writes the head x86 writes, and a
    taught bundle scores every photo the same on both: its raw outputs are bit-equal."""
    import shutil

    import numpy as np

    arm = arm64s(release)
    rels = [r for r in (sign_run / "splits" / "test.txt").read_text().split("\n") if r]
    taught = [r for r in rels if r.startswith("2/")][:8]
    data = tmp_path / "data" / "two-again"  # a sixth class: parity, not accuracy, is the point here
    data.mkdir(parents=True)
    for r in taught:
        shutil.copy(SIGN_DATA / r, data / Path(r).name)
    x86_out, arm_out = tmp_path / "x86", tmp_path / "arm"
    _ok(run_edgecls("teach", sign_bundle, tmp_path / "data", "--out", x86_out))
    _ok(arm.run("teach", sign_bundle, tmp_path / "data", "--out", arm_out, pi=pi, interpreter=interpreter))
    a, b = (np.load(o / "head" / "prototypes.npz") for o in (x86_out, arm_out))
    assert list(a["labels"]) == list(b["labels"]) and (a["counts"] == b["counts"]).all()
    np.testing.assert_allclose(a["means"], b["means"], rtol=1e-6, atol=1e-7)  # summation order may differ
    meta = [json.loads((o / "edgecls.json").read_text()) for o in (x86_out, arm_out)]
    assert meta[0]["head"] == meta[1]["head"] and meta[0]["taught"]["photos"] == meta[1]["taught"]["photos"]
    files = [SIGN_DATA / r for r in rels[::10]]
    x86 = run_edgecls("classify", x86_out, *files, "--json", "--top-k", "6", "--backend", "cpu")
    p = arm.run("classify", x86_out, *files, "--json", "--top-k", "6", "--backend", "cpu", pi=pi,
                interpreter=interpreter)
    _ok(x86)
    _ok(p)
    _scores_within_one_step(json_lines(p.stdout), json_lines(x86.stdout))
    v = arm.run("verify", x86_out, "--backend", "cpu", "--json", pi=pi, interpreter=interpreter)
    _ok(v)
    assert json.loads(v.stdout)["mode"].startswith("bit-exact, or within one int8 step"), v.stdout
