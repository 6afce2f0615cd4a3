"""`edgecls deploy` killed at each stage of a deploy - upload, unpack (the sha256 check), the
device-side verify, the switch - once by killing the deploy itself (its process group, as Ctrl-C
or a crash would) and once by cutting its connection. A real sshd whose tar, sha256sum and mv stand
in for a slow device (slow_tool.sh), so that each kill lands inside its stage. Afterwards the
device holds exactly one complete live version, which verifies, and the same deploy run again
finishes."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sshd
from conftest import ROOT, run_edgecls
from faultkit import MARKS
from test_deploy import make_bundle

pytestmark = MARKS
NAMES = {"v1": "mobilenet_v1_0.25_128_quant", "v1b": "mobilenet_v1_0.5_160_quant"}
STAGES = ["upload", "unpack", "verify", "switch"]
OUTCOMES: dict[str, str] = {}


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    if not Path(sshd.SSHD).exists():
        pytest.skip("openssh-server is not installed (apt-get install openssh-server)")
    root = tmp_path_factory.mktemp("slow")
    bin_ = root / "bin"
    bin_.mkdir()
    for tool in ("tar", "sha256sum", "mv"):
        (bin_ / tool).symlink_to(Path(__file__).parent / "slow_tool.sh")
    faults = root / "faults"
    faults.mkdir()
    srv = sshd.start(root / "sshd", env={"PATH": f"{bin_}:/usr/bin:/bin", "EDGECLS_FAULT_DIR": str(faults),
                                         "EDGECLS_FAULT_SLEEP": "1.5", "PYTHONPATH": str(ROOT)})
    yield srv, faults
    srv.stop()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundles")
    return {"v1": make_bundle(d / "v1-025"), "v1b": make_bundle(d / "v1-05", "mobilenet_v1_0.5_160_quant")}


@pytest.fixture(scope="module")
def deployed(device, bundles, tmp_path_factory):
    """A device folder with v1 live and the runtime in DIR/venv, copied for each test."""
    srv, faults = device
    dev = tmp_path_factory.mktemp("template") / "dev"
    runtime(dev, faults)
    first = run_edgecls("deploy", bundles["v1"], srv.target(dev), *srv.ssh_args(), "--no-verify")
    assert first.returncode == 0, first.stderr
    return dev


def runtime(dev: Path, faults: Path) -> None:
    """DIR/venv/bin/edgecls: this checkout's runtime, which notes the verify stage (slow when asked)."""
    exe = dev / "venv" / "bin" / "edgecls"
    exe.parent.mkdir(parents=True)
    exe.write_text(f'#!/bin/sh\necho verify >> "{faults}/stages"\n'
                   f'[ -f "{faults}/slow-verify" ] && sleep "${{EDGECLS_FAULT_SLEEP:-3}}"\n'
                   f'exec {shlex.quote(sys.executable)} -m edge_runtime.cli "$@"\n')
    exe.chmod(0o755)


def wait_unlocked(dev: Path, timeout: float = 30) -> None:
    """Until no deploy holds the device's lock (what a deploy left running there has finished)."""
    subprocess.run(["flock", "-w", str(timeout), str(dev / ".lock"), "true"], check=True)


def assert_one_complete_live_version(dev: Path, names: set[str], verify: bool) -> str:
    from edge_runtime.bundle.format import load_bundle

    current = dev / "current"
    assert current.is_symlink() and os.readlink(current).startswith("versions/")
    b = load_bundle(current)  # every file there, every sha256 right
    assert b.meta["name"] in names
    if verify:  # the golden photos, as `edgecls verify` checks them (in this process: no start-up per check)
        from edge_runtime.bundle.verify import format_report, verify as check

        rep = check(current, backend="cpu")
        assert rep.ok, format_report(rep)
    return b.meta["name"]


@pytest.mark.parametrize("stage", STAGES)
def test_a_deploy_killed_or_cut_at_each_stage_leaves_one_live_version_and_a_rerun_finishes(device, bundles, deployed,
                                                                                            tmp_path, stage):
    srv, faults = device
    for how in ("kill the deploy", "cut the connection"):
        dev = tmp_path / how.replace(" ", "-")
        shutil.copytree(deployed, dev, symlinks=True)
        (faults / "stages").write_text("")
        (faults / f"slow-{stage}").write_text("")
        try:
            proc = subprocess.Popen([sys.executable, "-m", "edge_runtime.cli", "deploy", str(bundles["v1b"]),
                                     srv.target(dev), *srv.ssh_args()], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, start_new_session=True)
            deadline = time.time() + 60
            while time.time() < deadline and stage not in (faults / "stages").read_text().split():
                time.sleep(0.05)
            time.sleep(0.3)  # inside the stage (it lasts 1.5 s more)
            assert proc.poll() is None, f"the deploy ended before the {stage} stage: {proc.communicate()}"
            if how == "kill the deploy":
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                srv.kill_sessions()
            out, err = proc.communicate(timeout=60)
        finally:
            (faults / f"slow-{stage}").unlink()
        assert "Traceback" not in err, err
        wait_unlocked(dev)
        live = assert_one_complete_live_version(dev, set(NAMES.values()), verify=True)
        if stage != "switch":  # before the switch nothing changed; at the switch the device may finish it
            assert live == NAMES["v1"], (how, stage)
        if how == "cut the connection":  # what the deploy said is what the device runs
            assert proc.returncode == 1 and "run the same deploy again" in err, err
            said = "the device finished the switch" if live == NAMES["v1b"] else "the previous version stays live"
            assert said in err, err
        OUTCOMES[f"{stage}, {how}"] = "new version live" if live == NAMES["v1b"] else "previous version live"
        again = run_edgecls("deploy", bundles["v1b"], srv.target(dev), *srv.ssh_args())
        assert again.returncode == 0, again.stderr
        assert assert_one_complete_live_version(dev, {NAMES["v1b"]}, verify=False) == NAMES["v1b"]
        assert not list((dev / "versions").glob(".incoming-*")) and not (dev / ".current.new").exists()
    print("\n" + "\n".join(f"{k}: {v}" for k, v in OUTCOMES.items() if k.startswith(stage)))
