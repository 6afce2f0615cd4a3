"""A staged rollout's health rules against a camera service that really runs: one real OpenSSH
server on 127.0.0.1 with the stand-in systemctl (tests/tools/fake_systemctl.py), which runs the
unit's `edgecls camera --serve` on the live bundle. Each rule (errors, frames, latency) fires on
a soak longer than zero with --service, a switched host that fails is rolled back, and a
rollback that cannot finish is reported as such without losing the report."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

import sshd
from conftest import CORAL, ROOT, run_edgecls
from deploy import inventory, remote, rollout, run, ssh
from test_deploy import REMOTE_EDGECLS, make_bundle

pytestmark = pytest.mark.sshd
UNIT = "edgecls-camera.service"
GOOD = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m edge_runtime.cli "$@"\n'
BROKEN = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m edge_runtime.cli "$@" --simulate-fault swap-rb\n'


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    """One device: sshd whose sessions find the stand-in systemctl first; units in its own folder."""
    if not Path(sshd.SSHD).exists():
        pytest.skip("openssh-server is not installed (apt-get install openssh-server)")
    root = tmp_path_factory.mktemp("svc")
    fake = root / "bin"
    fake.mkdir()
    (fake / "systemctl").symlink_to(Path(__file__).parent / "tools" / "fake_systemctl.py")
    units = root / "units"
    units.mkdir()
    srv = sshd.start(root / "sshd", env={"PATH": f"{fake}:/usr/bin:/bin", "EDGECLS_UNIT_DIR": str(units),
                                         "EDGECLS_SERVICE_SETTLE": "4", "PYTHONPATH": str(ROOT)})
    yield srv, units
    stop_service(units)
    srv.stop()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundles")
    return {"v1": make_bundle(d / "v1-025"), "v1b": make_bundle(d / "v1-05", "mobilenet_v1_0.5_160_quant")}


def stop_service(units: Path) -> None:
    pid = units / f"{UNIT}.pid"
    if pid.exists():
        try:
            os.killpg(int(pid.read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
        pid.unlink()


def photos(dev: Path, good: int, bad: int = 0) -> None:
    """DIR/photos: copies of a photo, with unreadable files between them (bad ones first in each pair)."""
    d = dev / "photos"
    d.mkdir(parents=True)
    for i in range(good):
        shutil.copy(CORAL / "parrot.jpg", d / f"{i:03d}b.jpg")
        if i < bad:
            (d / f"{i:03d}a.jpg").write_bytes(b"not a jpeg at all")


def inv(path: Path, srv, dev: Path) -> Path:
    path.write_text(f"[cams]\ncam ansible_host=127.0.0.1 ansible_port={srv.port} ansible_user={srv.user} "
                    f"ansible_ssh_private_key_file={srv.key} edgecls_dir={dev}\n")
    return path


def first_version(srv, bundle: Path, dev: Path, *extra: str) -> str:
    """A version live before the rollout (so that a rollback has somewhere to go)."""
    p = run_edgecls("deploy", bundle, srv.target(dev), *srv.ssh_args(), "--remote-edgecls", REMOTE_EDGECLS, *extra)
    assert p.returncode == 0, p.stderr
    return os.readlink(dev / "current").split("/")[-1]


def roll(srv, bundle: Path, inventory_file: Path, report: Path, camera: str, *extra: str):
    p = run_edgecls("deploy", bundle, "--hosts", inventory_file, "--known-hosts", srv.known_hosts, "--canary", "1",
                    "--soak", "3", "--service", camera, "--remote-edgecls", REMOTE_EDGECLS, "--json",
                    "--report", report, *extra)
    assert "Traceback" not in p.stderr, p.stderr
    return p, json.loads(p.stdout)["hosts"][0]


def camera_args(fps: float = 4) -> str:
    return f"--source photos --fps {fps} --serve 127.0.0.1:{sshd.free_port()}"


def test_errors_during_the_soak_fail_the_host_and_roll_it_back(device, bundles, tmp_path):
    """Issue 28 item 8: status.json had no `errors`, so this rule could never fire."""
    srv, units = device
    dev = tmp_path / "dev"
    photos(dev, good=60, bad=60)
    old = first_version(srv, bundles["v1"], dev, "--no-verify")
    p, h = roll(srv, bundles["v1"], inv(tmp_path / "i.ini", srv, dev), tmp_path / "r.md", camera_args(),
                "--max-latency-ratio", "0")  # 0: do not check (item 10: its type refused it)
    stop_service(units)
    assert p.returncode == 1 and h["result"] == "rolled back", h
    assert "the camera reported errors during the soak" in h["reason"], h
    assert h["after"] == old and os.readlink(dev / "current") == f"versions/{old}"


def test_frames_that_do_not_advance_fail_the_host(device, bundles, tmp_path):
    srv, units = device
    dev = tmp_path / "dev"
    photos(dev, good=1)  # one frame, then the camera serves on with nothing new
    old = first_version(srv, bundles["v1"], dev, "--no-verify")
    p, h = roll(srv, bundles["v1"], inv(tmp_path / "i.ini", srv, dev), tmp_path / "r.md", camera_args(),
                "--max-latency-ratio", "0")
    stop_service(units)
    assert p.returncode == 1 and h["result"] == "rolled back", h
    assert "frames did not advance in 3 s" in h["reason"] and h["after"] == old, h


def test_healthy_without_verify_says_so_then_a_slower_model_fails_on_latency(device, bundles, tmp_path):
    srv, units = device
    dev = tmp_path / "dev"
    photos(dev, good=80)
    first_version(srv, bundles["v1"], dev, "--no-verify")
    i = inv(tmp_path / "i.ini", srv, dev)
    p, h = roll(srv, bundles["v1"], i, tmp_path / "r.md", camera_args(), "--no-verify")
    assert p.returncode == 0 and h["result"] == "healthy", h
    assert h["facts"]["frames"][1] > h["facts"]["frames"][0] and h["facts"]["verify"] == "skipped (--no-verify)"
    md = (tmp_path / "r.md").read_text()
    assert "no device-side verify (--no-verify)" in md and "verified on the device" not in md
    assert "no device-side verify" in p.stderr
    healthy = h["after"]
    # The service now runs v1 (0.25, 128 px); v1b (0.5, 160 px) takes several times as long per frame.
    p, h = roll(srv, bundles["v1b"], i, tmp_path / "r2.md", camera_args(), "--max-latency-ratio", "1.2")
    stop_service(units)
    assert p.returncode == 1 and h["result"] == "rolled back", h
    assert "--max-latency-ratio 1.2" in h["reason"] and h["after"] == healthy, h
    old, new = h["facts"]["latency_ms"]
    assert new > 1.2 * old


def test_a_failed_service_install_after_the_switch_is_rolled_back_and_said(device, bundles, tmp_path):
    """Issue 28 item 1: the host was reported 'failed' with the old version as live while the new one ran."""
    srv, units = device
    dev = tmp_path / "dev"
    photos(dev, good=5)
    old = first_version(srv, bundles["v1"], dev, "--no-verify")
    (units / UNIT).unlink(missing_ok=True)
    (units / UNIT).mkdir()  # the unit file cannot be written
    try:
        p, h = roll(srv, bundles["v1b"], inv(tmp_path / "i.ini", srv, dev), tmp_path / "r.md", camera_args())
    finally:
        (units / UNIT).rmdir()
    assert p.returncode == 1, p.stderr
    assert h["result"] == "rolled back" and h["switched"] and h["after"] == old, h
    assert f"cannot write {units}/{UNIT}" in h["reason"] and f"rolled back to {old}" in h["reason"], h
    assert os.readlink(dev / "current") == f"versions/{old}"  # what the report says is what runs
    assert "every host it switched was rolled back" in p.stderr


def test_a_rollback_that_hangs_is_reported_and_the_rest_roll_back(device, bundles, tmp_path, monkeypatch):
    """Issue 28 item 2: a TimeoutExpired from one rollback escaped the rollout: no report, the other
    switched hosts left on the new version. Here the second host's sshd stops answering (SIGSTOP)
    just before the rollbacks, which wait 3 s; the third host fails its verify, which stops the rollout."""
    srv, _ = device
    extra = sshd.start(tmp_path / "sshd2", env={"PYTHONPATH": str(ROOT)})
    real_run = ssh.run

    def impatient(t, o, args, stdin=None, timeout=600):  # the rollback waits 3 s for a host, not minutes
        return real_run(t, o, args, stdin, 3 if remote.ROLLBACK in args else timeout)

    monkeypatch.setattr(ssh, "run", impatient)
    devs = [tmp_path / f"d{i}" for i in range(3)]
    try:
        hosts = []
        for i, (s, d) in enumerate(zip([srv, extra, srv], devs)):
            first_version(s, bundles["v1"], d, "--no-verify")
            exe = d / "venv" / "bin" / "edgecls"  # the device's runtime; cam2's swaps red and blue
            exe.parent.mkdir(parents=True)
            exe.write_text(BROKEN if i == 2 else GOOD)
            exe.chmod(0o755)
            t = ssh.Target(s.user, "127.0.0.1", str(d), s.port)
            hosts.append(inventory.Host(f"cam{i}", t, str(s.key)))
        kh = tmp_path / "known_hosts"
        kh.write_text(srv.known_hosts.read_text() + extra.known_hosts.read_text())
        opts = ssh.Options(known_hosts=str(kh))
        packed = run.pack(bundles["v1b"])

        def deploy(h, o):
            return run.deploy(packed, h.target, o)

        def log(message):
            if message.startswith("stopping"):
                extra.proc.send_signal(signal.SIGSTOP)

        rep = rollout.rollout(hosts, str(bundles["v1b"]), packed[1], opts, rollout.Policy(canary=3, soak=0),
                              deploy, log=log)
    finally:
        extra.proc.send_signal(signal.SIGCONT)
        extra.stop()
    by = {h.host: h for h in rep.hosts}
    assert by["cam2"].result == "failed" and "edgecls verify failed" in by["cam2"].reason
    assert by["cam1"].result == "rollback failed" and "ROLLBACK FAILED: no answer within 3 s" in by["cam1"].reason
    assert by["cam0"].result == "rolled back"
    assert os.readlink(devs[0] / "current") == f"versions/{by['cam0'].before}"
    assert "ROLLBACK FAILED" in rep.markdown() and [h.host for h in rep.rollback_failed] == ["cam1"]


def test_fleet_tables_name_hosts_as_the_inventory_does(device, bundles, tmp_path):
    """Issue 28 item 30: two inventory hosts on one address looked the same in the deploy table."""
    srv, _ = device
    a, b = tmp_path / "a", tmp_path / "b"
    i = tmp_path / "i.ini"
    i.write_text("[cams]\n" + "".join(f"{n} ansible_host=127.0.0.1 ansible_port={srv.port} ansible_user={srv.user} "
                                      f"ansible_ssh_private_key_file={srv.key} edgecls_dir={d}\n"
                                      for n, d in (("kitchen", a), ("garden", b))))
    p = run_edgecls("deploy", bundles["v1"], "--hosts", i, "--known-hosts", srv.known_hosts, "--no-verify")
    assert p.returncode == 0, p.stderr
    rows = p.stdout.splitlines()
    assert rows[0].split()[0] == "host" and [r.split()[0] for r in rows[1:]] == ["kitchen", "garden"]
    p = run_edgecls("deploy", "--rollback", "--hosts", i, "--known-hosts", srv.known_hosts)
    assert [r.split()[0] for r in p.stdout.splitlines()[1:]] == ["kitchen", "garden"]


def with_reference(bundle: Path, dest: Path) -> Path:
    """A copy of ``bundle`` whose edgecls.json records a drift reference: the model's scores on
    clean copies of parrot.jpg (what its device photos show, unless they are darkened)."""
    from edge_runtime import Classifier, load_bundle
    from edge_runtime.bundle.reference import Reference

    shutil.copytree(bundle, dest)
    with Classifier(load_bundle(dest).path, backend="cpu") as clf:
        scores = clf.scores(clf.infer(clf.prepare(str(CORAL / "parrot.jpg"))))
    meta = json.loads((dest / "edgecls.json").read_text())
    meta["reference"] = Reference.from_scores(np.stack([scores] * 30), "parrot").to_json()
    (dest / "edgecls.json").write_text(json.dumps(meta))
    return dest


def dark_photos(dev: Path, n: int) -> None:
    from PIL import Image, ImageEnhance, ImageFilter

    d = dev / "photos"
    d.mkdir(parents=True)
    im = ImageEnhance.Brightness(Image.open(CORAL / "parrot.jpg").convert("RGB")).enhance(0.2)
    im.filter(ImageFilter.GaussianBlur(5)).save(d / "000.png")
    for i in range(1, n):
        shutil.copy(d / "000.png", d / f"{i:03d}.png")


def test_drift_above_max_drift_fails_the_canary_and_rolls_it_back(device, bundles, tmp_path):
    """Issue 35: the soak reads the canary's drift; a lens gone dark fails it, and `deploy --status` shows it."""
    srv, units = device
    bundle = with_reference(bundles["v1"], tmp_path / "v1-ref")
    dev = tmp_path / "dev"
    dark_photos(dev, 400)
    old = first_version(srv, bundles["v1"], dev, "--no-verify")
    camera = f"--source photos --fps 30 --drift-window 20 --serve 127.0.0.1:{sshd.free_port()}"
    p, h = roll(srv, bundle, inv(tmp_path / "i.ini", srv, dev), tmp_path / "r.md", camera, "--max-latency-ratio", "0",
                "--max-drift", "0.25", "--no-verify")
    assert p.returncode == 1 and h["result"] == "rolled back", h
    assert "is above --max-drift 0.25" in h["reason"] and h["facts"]["drift"] > 0.25, h
    assert h["after"] == old and os.readlink(dev / "current") == f"versions/{old}"
    assert "max drift 0.25" in (tmp_path / "r.md").read_text()
    # the same bundle without the rule: healthy, and the status table shows the drift per host
    p, h = roll(srv, bundle, inv(tmp_path / "i.ini", srv, dev), tmp_path / "r2.md", camera, "--max-latency-ratio",
                "0", "--no-verify")
    assert p.returncode == 0 and h["result"] == "healthy" and h["facts"]["drift"] > 0.25, h
    table = run_edgecls("deploy", "--status", "--hosts", tmp_path / "i.ini", "--known-hosts", srv.known_hosts)
    stop_service(units)
    assert table.returncode == 0, table.stderr
    head, row = table.stdout.splitlines()[:2]
    assert head.split()[-1] == "drift" and float(row.split()[-1]) > 0.25, table.stdout
