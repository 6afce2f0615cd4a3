"""Peak memory (RSS) of the Pi-side commands on an emulated Raspberry Pi Zero 2 W (Cortex-A53,
512 MB) running Raspberry Pi OS arm64, Trixie and Bookworm: `edgecls classify`, `edgecls camera
--serve` on a folder of 640x480 frames with mining on (--save-uncertain) and a browser-like client
reading the live stream, and `edgecls collect --serve` with a client taking photos; with the
sign-language bundle (MobileNet V1 0.25, 128 px) and with Coral's MobileNetV2 1.0 224 (int8).

Two numbers a run, because qemu-user's own memory is not the program's:
- raw: the emulating process's peak RSS (its VmHWM, read by the program as it exits: wait4's
  ru_maxrss would also count the pages of the benchmark that forked it);
- net: the peak of the program's own pages, what its process would hold on a real Pi. qemu is
  started with the guest's address space in one fixed window of the host's (-B GUEST_BASE
  -R GUEST_SIZE), so every resident page inside the window is the program's and every one outside
  it is qemu's (its translated-code cache, its heap, each thread's CPU state); the split is read
  from /proc/PID/smaps every SAMPLE_S seconds, and the mappings that hold the most at the net peak
  are kept in the JSON.
The `python3 -c pass` row measures qemu's own floor. Emulated timings say nothing about a real Pi
and are not reported.

usage: python benchmarks/pi_memory.py [--release trixie] [--out benchmarks/results]
       (builds the arm64 tier's userland; needs the sign-language run of the tests, .cache/sign-*,
       or --bundle DIR)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from arm64 import PYTHONS, build

ASSETS = ROOT.parent / "shared" / "assets"
CORAL = ASSETS / "coral"
V2 = CORAL / "mobilenet_v2_1.0_224_quant.tflite"
BOARD = "zero2"
BUDGET_MB, GOAL_MB = 512, 150  # the Zero 2 W's memory; the goal for camera --serve with MobileNetV2
# The guest's address space: a window of the host's far from anything the host maps (its own
# mappings sit near the bottom and below 0x8000_0000_0000), large enough for any mmap the program makes.
GUEST_BASE, GUEST_SIZE = 0x2000_0000_0000, 1 << 40
SAMPLE_S = 0.1
# Runs `python3 -m MODULE ARGS` (or `-c CODE`) and, at exit, writes the process's VmHWM (kB) to
# $PI_MEMORY_HWM. Under qemu-user the guest's /proc/self/status is the emulating process's own.
WRAPPER = """import atexit, os, runpy, sys
def _hwm():
    with open('/proc/self/status') as f, open(os.environ['PI_MEMORY_HWM'], 'w') as out:
        out.write(next(line.split()[1] for line in f if line.startswith('VmHWM:')))
atexit.register(_hwm)
how, what = sys.argv[1:3]
if how == '-c':
    del sys.argv[1:3]
    exec(compile(what, '<string>', 'exec'), {'__name__': '__main__'})
else:
    sys.argv[:3] = [what]
    runpy.run_module(what, run_name='__main__', alter_sys=True)
"""
HEADER = re.compile(r"([0-9a-f]+)-[0-9a-f]+ (\S+) \S+ \S+ \S+ *(.*)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def emulated(arm, *args, code: str | None = None) -> list[str]:
    """``python3 -m edge_runtime.cli ARGS`` (or ``-c CODE``) on the emulated Zero 2 W, its guest in the window."""
    qemu, *rest = arm.qemu(BOARD)
    cmd = [qemu, "-B", hex(GUEST_BASE), "-R", hex(GUEST_SIZE), *rest, str(arm.python), "-c", WRAPPER]
    return cmd + (["-c", code] if code is not None else ["-m", "edge_runtime.cli", *map(str, args)])


def resident(pid: int, root: Path) -> tuple[int, int, dict[str, int]]:
    """(the program's resident kB, qemu's, the program's by mapping) of the emulating process PID."""
    guest = qemu = 0
    by: dict[str, int] = {}
    inside, name = False, ""
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = HEADER.match(line)
            if m:
                inside = GUEST_BASE <= int(m.group(1), 16) < GUEST_BASE + GUEST_SIZE
                name = _short(m.group(3), root) if m.group(3) else f"anonymous {m.group(2)}"
            elif line.startswith("Rss:"):
                kb = int(line.split()[1])
                if inside:
                    guest += kb
                    by[name] = by.get(name, 0) + kb
                else:
                    qemu += kb
    return guest, qemu, by


def _short(path: str, root: Path) -> str:
    """A mapped file's name as the Pi would show it: under /usr, or a package's own path."""
    if path.startswith(str(root)):
        return path[len(str(root)):]
    for marker in ("/site-litert/", "/site-tflite/", "/site-edgecls/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return Path(path).name


class Sampler:
    """Every SAMPLE_S seconds: the program's resident pages and qemu's; the peaks of each, and the
    program's mappings at its peak."""

    def __init__(self, pid: int, root: Path):
        self.pid, self.root = pid, root
        self.net = self.qemu = self.total = 0
        self.at_peak: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                guest, qemu, by = resident(self.pid, self.root)
            except (OSError, ValueError, StopIteration):  # the process is exiting
                guest, qemu, by = 0, 0, {}
            if guest > self.net:
                self.net, self.at_peak = guest, by
            self.qemu, self.total = max(self.qemu, qemu), max(self.total, guest + qemu)
            self.stop.wait(SAMPLE_S)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def peak(cmd: list[str], env: dict[str, str], root: Path, client=None, timeout: float = 900) -> dict:
    """Exit status, raw and net peak RSS (bytes) and the stderr tail of CMD; CLIENT(proc) runs while it does."""
    with tempfile.TemporaryFile("w+") as err, tempfile.NamedTemporaryFile("r") as hwm:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env={**env, "PI_MEMORY_HWM": hwm.name})
        sampler = Sampler(proc.pid, root)
        try:
            if client:
                client(proc)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait()
            sampler.close()
        err.seek(0)
        raw = int(hwm.read() or 0) * 1024
        top = sorted(sampler.at_peak.items(), key=lambda kv: -kv[1])[:12]
        return {"exit": proc.returncode, "raw": raw, "net": sampler.net * 1024, "qemu": sampler.qemu * 1024,
                "sampled_total": sampler.total * 1024, "net_top_kb": dict(top), "stderr": err.read()[-1500:]}


def wait_http(url: str, proc, seconds: float = 600) -> None:
    t = time.monotonic()
    while time.monotonic() - t < seconds:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.poll()}) before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"no answer from {url} in {seconds:.0f} s")


def read_stream(url: str, nbytes: int = 400_000, seconds: float = 60) -> None:
    """Read the live MJPEG stream as a browser would, for NBYTES or SECONDS."""
    t = time.monotonic()
    with urllib.request.urlopen(url, timeout=60) as r:
        got = 0
        while got < nbytes and time.monotonic() - t < seconds:
            chunk = r.read(16384)
            if not chunk:
                break
            got += len(chunk)


def frames(folder: Path, n: int = 40) -> Path:
    """n 640x480 JPEGs: what a camera at its default size gives the loop."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    photos = [CORAL / "parrot.jpg", CORAL / "cat.bmp", CORAL / "bird.bmp"]
    for i in range(n):
        im = Image.open(photos[i % len(photos)]).convert("RGB").resize((640, 480))
        im.rotate(i * 7).save(folder / f"frame-{i:03d}.jpg", quality=90)
    return folder


def measure(arm, release: str, bundle: Path, tmp: Path) -> list[dict]:
    env = arm.env(f"{arm.edgecls}{os.pathsep}{arm.site('litert')}")
    video = frames(tmp / "frames")
    models = {"sign bundle (MobileNet V1 0.25, 128 px)": [bundle],
              "MobileNetV2 1.0 224 (Coral, int8)": [V2, "--labels", CORAL / "imagenet_labels.txt"]}
    rows = []

    def row(command: str, model: str, cmd: list[str], client=None, timeout: float = 900) -> None:
        r = peak(cmd, env, arm.root, client, timeout)
        mb = {k: round(r[k] / 2**20, 1) for k in ("raw", "net", "qemu", "sampled_total")}
        rows.append({"release": release, "python": PYTHONS[release], "board": "Raspberry Pi Zero 2 W (Cortex-A53)",
                     "command": command, "model": model, "exit": r["exit"], "peak_rss_mb": mb["raw"],
                     "net_rss_mb": mb["net"], "qemu_rss_mb": mb["qemu"], "sampled_total_mb": mb["sampled_total"],
                     "net_top_kb": r["net_top_kb"]})
        print(f"{release:8s} {command:44s} {model:36s} exit {r['exit']} raw {mb['raw']:6.1f} MB net {mb['net']:6.1f} MB "
              f"qemu {mb['qemu']:5.1f} MB", flush=True)
        if r["exit"] not in (0, 130):
            print(r["stderr"], file=sys.stderr)

    row("python3 -c pass (qemu-user + Python floor)", "-", emulated(arm, code="pass"))
    row("python3 -c 'import numpy, PIL'", "-", emulated(arm, code="import numpy, PIL.Image"))
    for name, model in models.items():
        row("classify (3 images)", name, emulated(arm, "classify", *model, CORAL / "cat.bmp", CORAL / "bird.bmp",
                                                  CORAL / "parrot.jpg", "--backend", "cpu"))
        port = free_port()
        mined = tmp / f"mined-{port}"

        def viewer(proc, port=port):
            wait_http(f"http://127.0.0.1:{port}/status.json", proc)
            read_stream(f"http://127.0.0.1:{port}/stream.mjpg")
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60).read()

        # Every frame counts as unsure (score below 1, margin below 1), so mining writes at its rate
        # limit; the run ends after the folder's 40 frames (Ctrl-C after 5 minutes at the latest).
        row("camera --serve, mining on, a stream viewer", name,
            emulated(arm, "camera", *model, "--source", video, "--serve", f"127.0.0.1:{port}", "--backend", "cpu",
                     "--max-frames", "40", "--save-uncertain", mined, "--uncertain-score", "1", "--uncertain-margin",
                     "1", "--save-per-minute", "600"), client=viewer, timeout=300)
    port = free_port()

    def collector(proc, port=port):
        wait_http(f"http://127.0.0.1:{port}/collect.json", proc)
        read_stream(f"http://127.0.0.1:{port}/stream.mjpg", 200_000)
        for label in ("a", "b", "a"):
            req = urllib.request.Request(f"http://127.0.0.1:{port}/capture", method="POST",
                                         data=json.dumps({"label": label}).encode(),
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=120).read()
        proc.send_signal(signal.SIGINT)

    row("collect --serve, 3 photos taken (no model)", "-",
        emulated(arm, "collect", tmp / "dataset", "--source", video, "--serve", f"127.0.0.1:{port}", "--labels", "a,b"),
        client=collector)
    return rows


def sign_bundle() -> Path:
    found = sorted(ROOT.joinpath(".cache").glob("sign-*/bundle"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit("pi_memory.py: error: no sign-language bundle in .cache/sign-*/bundle; run the arm64 tests "
                         "once (they train it) or pass --bundle DIR")
    return found[-1]


def report(rows: list[dict], out: Path, before: list[dict] | None = None, before_label: str = "") -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "pi_memory.json").write_text(json.dumps(rows, indent=2) + "\n")
    old = {(r["release"], r["command"], r["model"]): r for r in before or () if "net_rss_mb" in r}
    md = ["# Peak memory on a Raspberry Pi Zero 2 W (512 MB), emulated", "",
          ("Raspberry Pi OS arm64 userlands (Debian's Python, ai-edge-litert's aarch64 wheel with numpy 2) run by "
           "qemu-user 7.2 with `-cpu cortex-a53` and a Zero 2 W's /proc/cpuinfo (so 2 XNNPACK threads here, the "
           "VM's cores, where a Zero 2 W takes 4), on a 2-core x86 VM; produced by "
           "`python benchmarks/pi_memory.py`. **raw** is the emulating process's peak RSS (its VmHWM); **net** is "
           "the peak of the program's own pages, what its process holds on a real Pi: qemu runs the guest in a "
           "fixed window of the host's address space, so every resident page inside it is the program's and "
           f"every one outside is qemu-user's own (sampled every {SAMPLE_S} s from /proc/PID/smaps; **qemu** is "
           "the most it held). Emulated timings say nothing about a real Pi and are not reported. Budget: the "
           f"Zero 2 W's {BUDGET_MB} MB (less the kernel, GPU split and services); goal: camera --serve with "
           f"MobileNetV2 under {GOAL_MB} MB."), ""]
    md += ["| release (Python) | command | model | net | raw | qemu's own |" + (" before: net / raw |" if old else "")
           + " exit |", "| --- | --- | --- | ---: | ---: | ---: |" + (" ---: |" if old else "") + " --- |"]
    for r in rows:
        was = old.get((r["release"], r["command"], r["model"]))
        md.append(f"| {r['release']} ({r['python']}) | {r['command']} | {r['model']} | **{r['net_rss_mb']:.0f} MB** | "
                  f"{r['peak_rss_mb']:.0f} MB | {r['qemu_rss_mb']:.0f} MB |"
                  + ((f" {was['net_rss_mb']:.0f} / {was['peak_rss_mb']:.0f} MB |" if was else " - |") if old else "")
                  + f" {r['exit']} |")
    md += ["", reading(rows, old, before_label), "", *where(rows), "", "![peak RSS](pi_memory.png)", ""]
    (out / "pi_memory.md").write_text("\n".join(md))
    plot(rows, out / "pi_memory.png")
    print("\n".join(md))


def reading(rows: list[dict], old: dict, before_label: str) -> str:
    """What the table says, from its numbers."""
    floor = [r for r in rows if r["command"].startswith("python3 -c pass")]
    goal = [r for r in rows if r["command"].startswith("camera") and r["model"].startswith("MobileNetV2")]
    top = max(rows, key=lambda r: r["net_rss_mb"])
    text = (f"Reading: the largest, {top['command'].split(',')[0]} with {top['model'].split(' (')[0]} on "
            f"{top['release']}, holds {top['net_rss_mb']:.0f} MB of its own, {top['net_rss_mb'] / BUDGET_MB:.0%} of "
            "a Zero 2 W's memory; "
            "camera --serve with MobileNetV2 holds " + " and ".join(f"{r['net_rss_mb']:.0f} MB on {r['release']}"
                                                                     for r in goal)
            + f" (goal: under {GOAL_MB} MB). qemu-user's own pages are no constant to subtract: "
            + " and ".join(f"{r['qemu_rss_mb']:.0f} MB beside a bare Python on {r['release']}" for r in floor)
            + ", " + " and ".join(f"{r['qemu_rss_mb']:.0f} MB" for r in goal) + " beside that camera (its "
            "translated-code cache grows with the code the program runs, and each thread has its CPU state), so a "
            "raw peak says little about a Pi; the net one is what a Pi's process holds.")
    if old and goal:
        was = [old[(r["release"], r["command"], r["model"])] for r in goal if (r["release"], r["command"], r["model"]) in old]
        text += (f" Before ({before_label or 'the code before'}), the same run held "
                 + " and ".join(f"{w['net_rss_mb']:.0f} MB net ({w['peak_rss_mb']:.0f} MB raw) on {w['release']}" for w in was)
                 + ".")
    return text


def where(rows: list[dict]) -> list[str]:
    """The program's largest mappings at its peak, for the camera with MobileNetV2 (the goal's row)."""
    out = []
    for r in rows:
        if r["command"].startswith("camera") and r["model"].startswith("MobileNetV2"):
            top = ", ".join(f"{name} {kb / 1024:.1f}" for name, kb in list(r["net_top_kb"].items())[:8])
            out.append(f"Where camera --serve with MobileNetV2 holds its {r['net_rss_mb']:.0f} MB on {r['release']} "
                       f"(MB, by mapping; anonymous: Python's heap, numpy arrays, the interpreter's arena and packed "
                       f"weights, thread stacks): {top}.")
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['release']}: {r['command'].split(' (')[0].split(',')[0]}"
              + (f"\n{r['model'].split(' (')[0]}" if r["model"] != "-" else "") for r in rows]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.5))
    y = range(len(rows))
    net = [r["net_rss_mb"] for r in rows]
    ax.barh(y, net, color="#4a7ab5", label="the program's own pages (net)")
    ax.barh(y, [r["peak_rss_mb"] - n for r, n in zip(rows, net)], left=net, color="#c9d3df",
            label="the rest of the emulating process's peak (qemu-user)")
    ax.axvline(GOAL_MB, color="#d08a00", linestyle="--", label=f"goal for camera --serve ({GOAL_MB} MB)")
    ax.axvline(BUDGET_MB, color="#b03030", label=f"Zero 2 W memory ({BUDGET_MB} MB)")
    ax.set_yticks(list(y), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("peak RSS (MB); the whole bar is the emulating process's peak")
    ax.set_title("edgecls on an emulated Raspberry Pi Zero 2 W (Cortex-A53, 512 MB)")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--release", action="append", choices=sorted(PYTHONS), help="trixie and bookworm by default")
    ap.add_argument("--bundle", type=Path, help="the sign-language bundle (default: the tests' .cache/sign-*/bundle)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--before", type=Path, help="an earlier pi_memory.json: its peaks become a column")
    ap.add_argument("--before-label", default="", help="what --before measured, for the reading (e.g. a commit)")
    a = ap.parse_args()
    bundle = a.bundle or sign_bundle()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for release in a.release or ["trixie", "bookworm"]:
            arm = build(ROOT / ".cache", Path(tmp) / release, release)
            rows += measure(arm, release, bundle, Path(tmp) / release)
    report(rows, a.out, json.loads(a.before.read_text()) if a.before else None, a.before_label)


if __name__ == "__main__":
    main()
