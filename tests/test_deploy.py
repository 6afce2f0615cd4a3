"""`edgecls deploy` against a real OpenSSH server on 127.0.0.1 (this machine plays the Pi)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sshd
from conftest import CORAL, CORAL_RESIZE, assert_one_line_error, json_lines, make_coral_bundle, run_edgecls

pytestmark = pytest.mark.sshd
# The device's edgecls: this checkout's, as a Pi's venv would hold it.
REMOTE_EDGECLS = f"{shlex.quote(sys.executable)} -m edge_runtime.cli"
PHOTOS = ["cat.bmp", "bird.bmp", "parrot.jpg"]


def make_bundle(dest: Path, model: str = "mobilenet_v1_0.25_128_quant", resize: str = CORAL_RESIZE) -> Path:
    return make_coral_bundle(dest, model, resize, tuple(PHOTOS))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundles")
    return {"v1": make_bundle(d / "v1-025"), "v1b": make_bundle(d / "v1-05", "mobilenet_v1_0.5_160_quant")}


def deploy(server, *args, **kw):
    return run_edgecls("deploy", *args, *server.ssh_args(), "--remote-edgecls", REMOTE_EDGECLS, **kw)


def status(server, directory) -> dict:
    p = run_edgecls("deploy", "--status", server.target(directory), *server.ssh_args(), "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_deploy_then_classify_on_the_device_matches_local(server, bundles, tmp_path):
    dev = tmp_path / "device"
    p = deploy(server, bundles["v1"], server.target(dev))
    assert p.returncode == 0, p.stderr
    assert (dev / "current").is_symlink() and (dev / "current" / "model.tflite").exists()
    photo = CORAL / "cat.bmp"
    remote = server.ssh(f"{REMOTE_EDGECLS} classify {shlex.quote(str(dev / 'current'))} {shlex.quote(str(photo))} --json")
    local = run_edgecls("classify", bundles["v1"], photo, "--json")
    assert remote.returncode == 0, remote.stderr
    assert json_lines(remote.stdout)[0]["classes"] == json_lines(local.stdout)[0]["classes"]
    s = status(server, dev)
    assert s["current"] == s["history"][-1] and s["incomplete"] == []


def test_cut_connection_keeps_the_previous_version_and_a_rerun_completes(server, bundles, tmp_path):
    dev = tmp_path / "device"
    assert deploy(server, bundles["v1"], server.target(dev)).returncode == 0
    before = status(server, dev)["current"]
    cmd = [sys.executable, "-m", "edge_runtime.cli", "deploy", str(bundles["v1b"]), server.target(dev),
           *server.ssh_args(), "--remote-edgecls", REMOTE_EDGECLS, "--limit", "150"]  # ~1.3 MB at 150 KiB/s
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline and not list((dev / "versions").glob(".incoming-*")):
        time.sleep(0.05)
    time.sleep(1.0)  # mid-upload
    assert proc.poll() is None, "the upload finished before the connection could be cut"
    server.kill_sessions()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "previous version stays live" in err and "Traceback" not in err, err
    s = status(server, dev)
    assert s["current"] == before
    v = run_edgecls("verify", dev / "current", "--backend", "cpu")  # the live version is complete and intact
    assert v.returncode == 0, v.stdout + v.stderr
    again = deploy(server, bundles["v1b"], server.target(dev))
    assert again.returncode == 0, again.stderr
    s = status(server, dev)
    assert s["current"] != before and s["incomplete"] == []
    assert json.loads((dev / "current" / "edgecls.json").read_text())["name"] == "mobilenet_v1_0.5_160_quant"


def test_a_changed_byte_is_refused_before_anything_is_sent(server, bundles, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(bundles["v1"], bad)
    data = bytearray((bad / "labels.txt").read_bytes())
    data[10] ^= 0x20
    (bad / "labels.txt").write_bytes(bytes(data))
    dev = tmp_path / "device"
    p = deploy(server, bad, server.target(dev))
    assert_one_line_error(p, "labels.txt", "sha256")
    assert not dev.exists()


def test_rollback_restores_the_previous_version_and_keep_prunes(server, bundles, tmp_path):
    dev = tmp_path / "device"
    ids = []
    for b in ("v1", "v1b", "v1", "v1b"):
        assert deploy(server, bundles[b], server.target(dev), "--keep", "2").returncode == 0
        ids.append(status(server, dev)["current"])
        time.sleep(1.1)  # version ids carry the second
    s = status(server, dev)
    assert sorted(s["versions"]) == sorted(ids[-2:])  # --keep 2
    r = run_edgecls("deploy", "--rollback", server.target(dev), *server.ssh_args())
    assert r.returncode == 0, r.stderr
    assert status(server, dev)["current"] == ids[-2]
    assert json.loads((dev / "current" / "edgecls.json").read_text())["name"] == "mobilenet_v1_0.25_128_quant"
    r = run_edgecls("deploy", "--rollback", server.target(dev), *server.ssh_args())
    assert r.returncode == 0 and status(server, dev)["current"] == ids[-1]  # back and forth between the kept two


def test_unknown_host_key_is_refused_with_the_command_to_accept_it(server, bundles, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    args = ["--port", str(server.port), "--identity", str(server.key), "--known-hosts", str(empty)]
    p = run_edgecls("deploy", bundles["v1"], server.target(tmp_path / "device"), *args)
    assert_one_line_error(p, "unknown host key", f"ssh-keyscan -p {server.port} 127.0.0.1")
    assert not (tmp_path / "device").exists()


def test_hostile_names_stay_names(server, bundles, tmp_path):
    canary = tmp_path / "pwned"
    name = f"dev ice $(touch {canary}) `touch {canary}` 'q\" ;touch {canary}"
    dev = tmp_path / name
    p = deploy(server, bundles["v1"], server.target(dev))
    assert p.returncode == 0, p.stderr
    assert (dev / "current" / "model.tflite").exists() and not canary.exists()
    assert status(server, dev)["current"]


def test_two_hosts_one_down(server, bundles, tmp_path):
    """Two servers on two ports in one hosts file; the second is down. The first is deployed, the
    table and the exit status report the second."""
    other = sshd.start(tmp_path / "sshd2")
    other.stop()
    hosts = tmp_path / "pis.txt"
    hosts.write_text(f"# the fleet\nssh://{server.user}@127.0.0.1:{server.port}{tmp_path / 'a'}\n\n"
                     f"ssh://{server.user}@127.0.0.1:{other.port}{tmp_path / 'b'}   # in the workshop\n")
    args = ["--identity", str(server.key), "--known-hosts", str(server.known_hosts), "--remote-edgecls", REMOTE_EDGECLS]
    p = run_edgecls("deploy", bundles["v1"], "--hosts", hosts, *args)
    assert p.returncode == 1, p.stdout + p.stderr
    rows = p.stdout.splitlines()  # each row named as the hosts file names it
    assert any(r.startswith(f"ssh://{server.user}@127.0.0.1:{server.port}/") and "  ok  " in r for r in rows), p.stdout
    assert any(f":{other.port}/" in r and "FAILED" in r and "cannot connect" in r for r in rows), p.stdout
    assert "1 of 2 targets failed" in p.stderr
    assert (tmp_path / "a" / "current" / "model.tflite").exists() and not (tmp_path / "b").exists()


def test_failing_verify_on_the_device_keeps_the_old_version(server, bundles, tmp_path):
    dev = tmp_path / "device"
    assert deploy(server, bundles["v1"], server.target(dev)).returncode == 0
    before = status(server, dev)["current"]
    wrong = tmp_path / "wrong-resize"
    shutil.copytree(bundles["v1"], wrong)
    meta = json.loads((wrong / "edgecls.json").read_text())
    meta["input"]["resize"] = "nearest"  # not how the golden outputs were made
    (wrong / "edgecls.json").write_text(json.dumps(meta))
    p = deploy(server, wrong, server.target(dev))
    err = assert_one_line_error(p, "edgecls verify failed on the device", "previous version stays live")
    assert "resize" in err
    s = status(server, dev)
    assert s["current"] == before and s["incomplete"] == [] and len(s["versions"]) == 1


def test_two_deploys_at_once_cannot_both_write(server, bundles, tmp_path):
    dev = tmp_path / "device"
    cmd = [sys.executable, "-m", "edge_runtime.cli", "deploy", str(bundles["v1b"]), server.target(dev),
           *server.ssh_args(), "--remote-edgecls", REMOTE_EDGECLS, "--limit", "300"]
    slow = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline and not list((dev / "versions").glob(".incoming-*")):
        time.sleep(0.05)
    second = deploy(server, bundles["v1"], server.target(dev))
    assert_one_line_error(second, "another deploy holds the device's lock")
    out, err = slow.communicate(timeout=120)
    assert slow.returncode == 0, err
    s = status(server, dev)
    assert len(s["versions"]) == 1 and s["current"] == s["versions"][0]
    assert os.path.realpath(dev / "current").endswith(s["current"])


@pytest.mark.slow
def test_install_runtime_then_the_device_verifies_with_its_own_venv(server, bundles, tmp_path):
    """--install-runtime: a venv on the device from wheels built here (the device needs no internet);
    later deploys verify with it without being told where edgecls is."""
    dev = tmp_path / "device"
    p = run_edgecls("deploy", bundles["v1"], server.target(dev), *server.ssh_args(), "--install-runtime", timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "installed edgecls" in p.stderr and not any("no edgecls runtime" in l for l in p.stderr.splitlines())
    venv = dev / "venv"
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg
    doctor = server.ssh(f"{shlex.quote(str(venv / 'bin' / 'edgecls'))} doctor --json")
    assert doctor.returncode in (0, 1) and '"interpreter"' in doctor.stdout
    assert not list((venv / "lib").glob("python3*/site-packages/tensorflow"))
    again = run_edgecls("deploy", bundles["v1b"], server.target(dev), *server.ssh_args())
    assert again.returncode == 0 and "warning" not in again.stderr, again.stderr


def test_service_runs_the_camera_on_the_live_bundle_and_follows_rollback(bundles, tmp_path):
    """--service writes a systemd unit that runs `edgecls camera` on DIR/current, restarts it and
    checks it runs; a rollback restarts it. systemd cannot run here: a stand-in systemctl (on the
    session PATH of this server only) runs the unit's ExecStart for real."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "systemctl").symlink_to(Path(__file__).parent / "tools" / "fake_systemctl.py")
    units = tmp_path / "units"
    units.mkdir()
    srv = sshd.start(tmp_path / "sshd-systemd", env={"PATH": f"{fake}:/usr/bin:/bin", "EDGECLS_UNIT_DIR": str(units),
                                                      "EDGECLS_SERVICE_SETTLE": "3"})
    try:
        dev = tmp_path / "dev ice"
        camera_args = f"--source {shlex.quote(str(CORAL))} --fps 1 --serve 127.0.0.1:0 --json"
        p = deploy(srv, bundles["v1"], srv.target(dev), "--service", camera_args)
        assert p.returncode == 0, p.stderr
        assert "service edgecls-camera.service running" in p.stdout
        unit = (units / "edgecls-camera.service").read_text()
        assert f'"camera" "{dev}/current"' in unit and "Restart=on-failure" in unit
        out = (units / "edgecls-camera.service.out").read_text()
        # the camera runs the version `current` points to (and follows the link: live/swap.py)
        live = (dev / "current").resolve().name
        assert "web view on http://127.0.0.1:" in out and f"versions/{live}/model.tflite" in out, out
        first = json.loads((dev / "current" / "edgecls.json").read_text())["name"]
        assert deploy(srv, bundles["v1b"], srv.target(dev), "--service", camera_args).returncode == 0
        r = run_edgecls("deploy", "--rollback", srv.target(dev), *srv.ssh_args())
        assert r.returncode == 0, r.stderr
        assert json.loads((dev / "current" / "edgecls.json").read_text())["name"] == first
        log = (units / "systemctl.log").read_text().splitlines()
        assert log.count("restart edgecls-camera.service") == 3  # deploy, deploy, rollback
    finally:
        pid = units / "edgecls-camera.service.pid"
        if pid.exists():
            try:
                os.killpg(int(pid.read_text()), 15)
            except OSError:
                pass
        srv.stop()


def test_symlinks_go_as_files_and_device_dirs_mean_what_a_shell_user_means(server, bundles, tmp_path):
    linked = tmp_path / "linked"
    shutil.copytree(bundles["v1"], linked)
    real = tmp_path / "labels-elsewhere.txt"
    shutil.move(linked / "labels.txt", real)
    (linked / "labels.txt").symlink_to(real)
    home = server.ssh("echo $HOME").stdout.strip()
    name = f"-edgecls-test-{os.getpid()}"
    try:
        p = deploy(server, linked, server.target(name))  # a DIR that starts with '-'
        assert p.returncode == 0, p.stderr
        sent = Path(home) / name / "current" / "labels.txt"
        assert sent.is_file() and not sent.is_symlink() and sent.read_bytes() == real.read_bytes()
        p = deploy(server, bundles["v1"], server.target(f"~/{name}-tilde"))  # ~/ is the login's home
        assert p.returncode == 0, p.stderr
        assert (Path(home) / f"{name}-tilde" / "current" / "model.tflite").is_file()
    finally:
        shutil.rmtree(Path(home) / name, ignore_errors=True)
        shutil.rmtree(Path(home) / f"{name}-tilde", ignore_errors=True)
    for bad in ("/", "~", ""):
        p = run_edgecls("deploy", bundles["v1"], f"{server.user}@127.0.0.1:{bad}" if bad else "x@127.0.0.1:/",
                        *server.ssh_args())
        assert p.returncode == 2 and "root or home" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_a_device_without_a_runtime_is_refused_before_the_switch_unless_no_verify(server, bundles, tmp_path):
    dev = tmp_path / "bare-device"
    p = run_edgecls("deploy", bundles["v1"], server.target(dev), *server.ssh_args())  # no edgecls on its PATH
    assert p.returncode == 1 and "--install-runtime" in p.stderr and "--no-verify" in p.stderr, p.stderr
    assert not (dev / "current").exists()
    p = run_edgecls("deploy", bundles["v1"], server.target(dev), *server.ssh_args(), "--no-verify")
    assert p.returncode == 0, p.stderr
    assert (dev / "current" / "model.tflite").is_file()


def test_the_unit_file_escapes_specifiers_and_refuses_line_breaks():
    from deploy.run import DeployError, unit_text

    text = unit_text(["/opt/venv/bin/edgecls", "camera", "/srv/a b/current", "--mqtt", "mqtt://u:p$w%d@h"],
                     "pi", "/srv/a b")
    (line,) = [l for l in text.splitlines() if l.startswith("ExecStart=")]
    assert '"mqtt://u:p$$w%%d@h"' in line and '"/srv/a b/current"' in line
    with pytest.raises(DeployError, match="line break"):
        unit_text(["/opt/venv/bin/edgecls", "camera", "x\nExecStartPre=/bin/rm -rf /"], "pi", "/srv")


@pytest.mark.parametrize("tool", ["installed", "missing"])
def test_the_upload_script_packages_the_ai_camera_network_where_imx500_tools_exist(tool, tmp_path):
    """The device side of a deploy with an imx500/ part, run as the device runs it (sh, tar on stdin)."""
    from deploy import remote
    from deploy.run import pack

    bundle = make_coral_bundle(tmp_path / "b")
    files = {name: bundle / name for name in json.loads((bundle / "edgecls.json").read_text())["files"]}
    files["imx500/packerOut.zip"] = b"PK\x05\x06" + bytes(18)  # what imx500-package reads
    meta = {k: v for k, v in json.loads((bundle / "edgecls.json").read_text()).items()
            if k not in ("files", "format_version", "created")}
    from edge_runtime import write_bundle

    data, version = pack(write_bundle(tmp_path / "imx", files, meta))
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    if tool == "installed":  # Raspberry Pi OS's tool takes -i ZIP -o DIR and writes DIR/network.rpk
        (fakebin / "imx500-package").write_text('#!/bin/sh\n[ "$1" = -i ] && [ "$3" = -o ] && echo rpk > "$4/network.rpk"\n')
        (fakebin / "imx500-package").chmod(0o755)
    dev = tmp_path / "device"
    p = subprocess.run(["sh", "-c", remote.UPLOAD, "edgecls-deploy", str(dev), version, "5", "", "yes"], input=data,
                       capture_output=True, env={**os.environ, "PATH": f"{fakebin}:{os.environ['PATH']}"}, timeout=60)
    assert p.returncode == 0 and p.stdout.decode().strip() == f"live {version}", p.stderr
    rpk = dev / "current" / "imx500" / "network.rpk"
    if tool == "installed":
        assert rpk.read_text() == "rpk\n"
    else:
        assert not rpk.exists() and b"sudo apt install imx500-tools" in p.stderr
