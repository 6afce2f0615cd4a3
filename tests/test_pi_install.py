"""The Raspberry Pi way of installing, proven on emulated Raspberry Pi OS arm64 (bookworm and
trixie): Debian's own python3-numpy and python3-pil, a venv with --system-site-packages over them,
edgecls installed into it from its wheel, and pip keeping the system numpy and Pillow (a second
numpy in the venv breaks apt's picamera2 and simplejpeg, which are built against the system one).

The commands are the README's Pi install section, read from README.md and run one by one as the
Pi's shell would: ``python3`` is the userland's, ``~`` a fresh home, pip finds packages in the
wheels that PyPI offers the Pi (tools/arm64_userland.sh downloads them; no index at test time).
qemu-user cannot start a foreign child process by itself: tools/qemu_exec does what binfmt_misc
does on a machine with it (venv's ensurepip runs in a child). `sudo apt install` is checked
against the Debian packages the userland is made of."""

from __future__ import annotations

import glob
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from arm64 import ROOT, SCRIPT, wheel
from conftest import (
    CORAL,
    CORAL_RESIZE,
    GOLDEN,
    assert_golden,
    json_lines,
    make_coral_bundle,
)

pytestmark = pytest.mark.arm64
README = ROOT / "README.md"
SECTION = "### On Raspberry Pi OS"
SHIM = Path(__file__).resolve().parent / "tools" / "qemu_exec"
sys.path.insert(0, str(SHIM))
from qemu_exec import guest_argv

WAYS = [pytest.param("bookworm", "pi4", id="bookworm-system-site-pi4"),
        pytest.param("trixie", "pi5", id="trixie-system-site-pi5")]


def readme_commands() -> list[str]:
    """The first indented block after the README's Pi install heading."""
    text = README.read_text().split(SECTION, 1)[1].split("\n")
    start = next(i for i, line in enumerate(text) if line.startswith("    "))
    block = []
    for line in text[start:]:
        if not line.startswith("    "):
            break
        block.append(line.strip())
    return block


class PiShell:
    """Runs a README command line on the emulated Pi (words, ~, one glob, one > redirect)."""

    def __init__(self, arm, pi: str, home: Path, cwd: Path):
        self.arm, self.pi, self.home, self.cwd = arm, pi, home, cwd
        self.qemu = arm.qemu(pi)
        self.env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", "PYTHONPATH": str(SHIM),
                    "EDGECLS_QEMU_EXEC": "\n".join(self.qemu), "PIP_CONFIG_FILE": os.devnull,
                    "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(arm.userland / "wheels-pip"),
                    "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_ROOT_USER_ACTION": "ignore",
                    # Emulated time: pip leaves .pyc files to Python, which writes those it imports.
                    "PIP_NO_COMPILE": "1"}

    def words(self, line: str) -> tuple[list[str], Path | None]:
        words, out = [], None
        tokens = shlex.split(line, comments=True)
        if ">" in tokens:
            i = tokens.index(">")
            tokens, out = tokens[:i], self.expand(tokens[i + 1])
        for t in tokens:
            t = str(self.expand(t)) if t.startswith("~") else t
            if "*" in t:
                (t,) = glob.glob(t, root_dir=self.cwd)
            words.append(t)
        return words, (Path(out) if out else None)

    def expand(self, word: str) -> str:
        return str(self.home) + word[1:] if word.startswith("~") else word

    def run(self, line: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        argv, out = self.words(line)
        if argv[0] == "python3":
            argv[0] = str(self.arm.root / "usr/bin/python3")
        p = subprocess.run(guest_argv(argv, self.qemu), check=False, capture_output=True, text=True, env=self.env,
                           cwd=self.cwd, timeout=timeout)
        if out is not None:
            out.write_text(p.stdout)
        return p


def _ok(p) -> None:
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"


def test_readme_names_the_externally_managed_error_and_both_releases():
    section = README.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    assert "externally-managed-environment" in section and "PEP 668" in section
    assert "Trixie" in section and "Bookworm" in section and "--system-site-packages" in section


@pytest.mark.parametrize("release,pi", WAYS)
def test_readme_pi_install_keeps_the_system_numpy_and_pillow(arm64s, tmp_path, release, pi):
    arm = arm64s(release)
    home, cwd = tmp_path / "home", tmp_path / "download"
    home.mkdir()
    cwd.mkdir()
    (cwd / wheel(tmp_path).name).write_bytes(wheel(tmp_path).read_bytes())  # the copied wheel
    sh = PiShell(arm, pi, home, cwd)
    script = SCRIPT.read_text()
    for line in readme_commands():
        if line.startswith("sudo apt install"):
            # Made of these packages: tools/arm64_userland.sh unpacks them (apt cannot run under qemu-user).
            assert all(pkg in script for pkg in shlex.split(line)[3:] if not pkg.startswith("-")), line
            continue
        _ok(sh.run(line))
    venv = home / "edgecls"
    system = str(arm.root / "usr/lib/python3/dist-packages")
    # pip list: numpy and Pillow are the system's; nothing of them in the venv.
    listed = sh.run("~/edgecls/bin/pip list --format json --verbose")
    _ok(listed)
    where = {d["name"].lower(): d["location"] for d in json.loads(listed.stdout)}
    assert where["numpy"] == system and where["pillow"] == system, where
    assert where["edgecls"].startswith(str(venv)) and where["ai-edge-litert"].startswith(str(venv)), where
    site = next(venv.glob("lib/python3*/site-packages"))
    assert not [p.name for p in site.iterdir() if p.name.lower().startswith(("numpy", "pil", "pillow"))]
    code = "import numpy, PIL, ai_edge_litert, edge_runtime; print(numpy.__file__); print(PIL.__file__)"
    p = sh.run(f"~/edgecls/bin/python -c {shlex.quote(code)}")
    _ok(p)
    assert all(line.startswith(system + "/") for line in p.stdout.split()), p.stdout
    # The golden checks, with the edgecls command the venv installed: a bundle of MobileNet V2 1.0
    # 224 whose golden photos were recorded here, and Coral's expected label.
    model, image, index, k, min_score, labels = GOLDEN[3]
    bundle = make_coral_bundle(tmp_path / "bundle", model)
    v = sh.run(f"~/edgecls/bin/edgecls verify {bundle} --backend cpu --json")
    _ok(v)
    report = json.loads(v.stdout)
    assert report["ok"] and len(report["photos"]) == 3, report
    c = sh.run(f"~/edgecls/bin/edgecls classify {CORAL / (model + '.tflite')} --labels {CORAL / labels} "
               f"{CORAL / image} --json --top-k 5 --resize {CORAL_RESIZE} --backend cpu")
    _ok(c)
    (result,) = json_lines(c.stdout)
    assert_golden(result["classes"], index, k, min_score)
