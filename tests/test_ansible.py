"""The Ansible collection (deploy/ansible) against real OpenSSH servers on 127.0.0.1: ansible-core from
PyPI in a cached venv runs deploy/ansible/rollout.yml over three devices, each its own sshd with a
device-side edgecls wrapper (as in test_fleet). Scenarios: a rollout to three hosts and a second
identical run that changes nothing; a canary whose device-side verify fails, which stops the play
with the others untouched; a host that drops in the middle of a wave, whose wave is rolled back; a
camera whose soak (status.json over its web view) shows errors.
After each, what every device holds is read from its folder: the live version and its files."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import sshd
from conftest import ROOT, run_edgecls
from test_deploy import make_bundle

COLLECTION = ROOT / "deploy" / "ansible"
PLAYBOOK = COLLECTION / "rollout.yml"
ANSIBLE = ["ansible-core>=2.15,<2.20"]
# the device's runtime: this checkout's edgecls (sshd passes no PYTHONPATH on)
EDGECLS = f"PYTHONPATH={shlex.quote(str(ROOT))} exec {shlex.quote(sys.executable)} -m edge_runtime.cli"
GOOD = f'#!/bin/sh\n{EDGECLS} "$@"\n'
BROKEN = f'#!/bin/sh\n{EDGECLS} "$@" --simulate-fault swap-rb\n'


def test_the_collection_ships_the_same_device_side_code_as_edgecls_deploy():
    """One implementation, two drivers: the module_utils copy is deploy/remote.py, byte for byte,
    and that file imports nothing but the standard library (it runs on the device)."""
    copy = COLLECTION / "plugins" / "module_utils" / "edgecls_remote.py"
    assert copy.read_bytes() == (ROOT / "deploy" / "remote.py").read_bytes(), (
        "deploy/remote.py changed: cp deploy/remote.py deploy/ansible/plugins/module_utils/edgecls_remote.py")
    tree = ast.parse((ROOT / "deploy" / "remote.py").read_text())
    imports = {(n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
               for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    assert imports <= {"__future__", "hashlib", "io", "json", "os", "re", "tarfile", "time", "typing", "collections"}


# --- the controller, the devices -----------------------------------------------------------------


@pytest.fixture(scope="module")
def ansible(tmp_path_factory) -> dict[str, str]:
    """ansible-core in a cached venv, the collection installed from this checkout (no network), and
    the environment every ansible command of these tests runs with."""
    from venvs import make_venv

    python = make_venv("ansible", ANSIBLE, checkout=False)  # a controller without edgecls
    home = tmp_path_factory.mktemp("ansible")
    colls = home / "collections"
    p = subprocess.run([str(python.parent / "ansible-galaxy"), "collection", "install", str(COLLECTION), "-p",
                        str(colls), "--force"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (colls / "ansible_collections" / "edgecls" / "fleet" / "plugins" / "modules" / "edgecls_deploy.py").exists()
    return {**os.environ, "PATH": f"{python.parent}:{os.environ['PATH']}", "ANSIBLE_COLLECTIONS_PATH": str(colls),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"), "ANSIBLE_SSH_CONTROL_PATH_DIR": str(home / "cp"),
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_HOME": str(home), "ANSIBLE_PYTHON_INTERPRETER": "auto_silent"}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundles")
    return {"v1": make_bundle(d / "v1-025"), "v2": make_bundle(d / "v2-05", "mobilenet_v1_0.5_160_quant")}


@pytest.fixture
def fleet(tmp_path):
    """Three devices: their own sshd, port and key; a runtime at DIR/venv/bin/edgecls."""
    if not Path(sshd.SSHD).exists():
        pytest.skip("openssh-server is not installed (apt-get install openssh-server)")
    servers = [sshd.start(tmp_path / f"sshd{i}") for i in range(3)]
    devs = []
    for i in range(3):
        d = tmp_path / f"pi{i}"
        _tool(d / "venv" / "bin" / "edgecls", GOOD)
        devs.append(d)
    known = tmp_path / "known_hosts"
    known.write_text("".join(s.known_hosts.read_text() for s in servers))
    yield servers, devs, known
    for s in servers:
        if s.proc.poll() is None:
            s.stop()


def _tool(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def _inventory(path: Path, servers, devs, known: Path, bins: dict[int, Path] | None = None) -> Path:
    """An Ansible INI inventory of the devices, as an operator writes it (and edgecls deploy reads it)."""
    lines = ["[cameras]"]
    for i, (s, d) in enumerate(zip(servers, devs)):
        own = f" edgecls_bin={(bins or {})[i]}" if i in (bins or {}) else ""
        lines.append(f"pi{i} ansible_host=127.0.0.1 ansible_port={s.port} ansible_user={s.user} "
                     f"ansible_ssh_private_key_file={s.key} edgecls_dir={d}{own}")
    lines += ["[cameras:vars]", "ansible_python_interpreter=/usr/bin/python3",
              "ansible_ssh_transfer_method=piped",  # the test sshd has no sftp subsystem
              f"ansible_ssh_common_args='-o UserKnownHostsFile={known}'"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _playbook(env: dict[str, str], inv: Path, bundle: Path, *extra: str) -> list[str]:
    return ["ansible-playbook", "-i", str(inv), str(PLAYBOOK), "-e", f"bundle={bundle}", "-e", "edgecls_soak=0", *extra]


def _play(env: dict[str, str], inv: Path, bundle: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(_playbook(env, inv, bundle, *extra), capture_output=True, text=True, env=env, timeout=timeout)


def recap(out: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP: host -> {ok, changed, unreachable, failed, ...}."""
    rows = {}
    for m in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", out.split("PLAY RECAP")[-1], re.M):
        rows[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return rows


def held(dev: Path) -> dict:
    """What a device holds: the live version, its bundle name, the kept versions, leftovers."""
    cur = dev / "current"
    live = os.readlink(cur).split("/")[-1] if cur.is_symlink() else None
    meta = json.loads((cur / "edgecls.json").read_text()) if live else {}
    return {"live": live, "name": meta.get("name"), "versions": sorted(p.name for p in (dev / "versions").glob("*"))
            if (dev / "versions").is_dir() else [],
            "leftovers": sorted(p.name for p in [*dev.glob(".ansible-upload-*"), *dev.glob("versions/.incoming-*")])}


def assert_holds(dev: Path, bundle: Path) -> str:
    """The device's live version is ``bundle``, every file of it byte for byte; returns the version id."""
    h = held(dev)
    meta = json.loads((bundle / "edgecls.json").read_text())
    assert h["live"] and h["name"] == meta["name"], h
    for name in [*meta["files"], "edgecls.json"]:
        assert (dev / "current" / name).read_bytes() == (bundle / name).read_bytes(), name
    assert not h["leftovers"], h
    return h["live"]


# --- the scenarios -------------------------------------------------------------------------------


@pytest.mark.sshd
@pytest.mark.slow
def test_rollout_to_three_hosts_then_the_same_run_again_changes_nothing(ansible, fleet, bundles, tmp_path):
    servers, devs, known = fleet
    inv = _inventory(tmp_path / "pis.ini", servers, devs, known)
    p = _play(ansible, inv, bundles["v1"])
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]
    r = recap(p.stdout)
    assert all(r[f"pi{i}"]["changed"] >= 1 and r[f"pi{i}"]["failed"] == 0 for i in range(3)), r
    # serial [1, "30%"]: the canary alone, then the others (30% of 3 hosts: one a wave)
    batches = [re.findall(r"^\w+: \[(pi\d)\]", b, re.M) for b in p.stdout.split("PLAY [Roll the bundle out")[1:]]
    assert [sorted(set(b)) for b in batches] == [["pi0"], ["pi1"], ["pi2"]], batches
    first = [assert_holds(d, bundles["v1"]) for d in devs]
    assert len(set(first)) == 1  # packed once: one version id on every device

    archive = tmp_path / "v1.tar.gz"  # the same bundle as one .tar.gz: the same bundle to the devices
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bundles["v1"], arcname="v1")
    again = _play(ansible, inv, archive)
    assert again.returncode == 0, again.stdout[-6000:]
    r = recap(again.stdout)
    assert all(r[h]["changed"] == 0 and r[h]["failed"] == 0 for h in ("localhost", "pi0", "pi1", "pi2")), r
    assert [assert_holds(d, bundles["v1"]) for d in devs] == first
    assert all(held(d)["versions"] == [first[0]] for d in devs)  # nothing sent, nothing unpacked

    # facts: what runs where, read by `ansible -m`
    p = subprocess.run(["ansible", "-i", str(inv), "cameras", "-m", "edgecls.fleet.edgecls_facts",
                        "-a", "dir={{ edgecls_dir }}"], capture_output=True, text=True, env=ansible, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    facts = {m.group(1): json.loads(m.group(2)) for m in re.finditer(r"^(pi\d) \| SUCCESS => (\{.*?^\})", p.stdout, re.M | re.S)}
    for i, d in enumerate(devs):
        f = facts[f"pi{i}"]["ansible_facts"]["edgecls"]
        assert f["version"] == first[0] and f["name"] == "mobilenet_v1_0.25_128_quant" and f["backend"] == "cpu"
        assert f["runtime"].startswith("edgecls ") and f["board"] and f["dir"] == str(d)
        assert f["sha256"] and len(f["sha256"]) == 64 and facts[f"pi{i}"]["changed"] is False


@pytest.mark.sshd
@pytest.mark.slow
def test_failing_canary_stops_the_play_and_leaves_the_others_untouched(ansible, fleet, bundles, tmp_path):
    servers, devs, known = fleet
    inv = _inventory(tmp_path / "pis.ini", servers, devs, known)
    # v1 everywhere with edgecls deploy: the collection takes over folders edgecls deploy made
    p = run_edgecls("deploy", bundles["v1"], "--hosts", inv, "--known-hosts", known)
    assert p.returncode == 0, p.stdout + p.stderr
    before = [held(d) for d in devs]
    _tool(devs[0] / "venv" / "bin" / "edgecls", BROKEN)  # the canary's runtime swaps red and blue

    p = _play(ansible, inv, bundles["v2"])
    assert p.returncode != 0, p.stdout[-6000:]
    r = recap(p.stdout)
    assert r["pi0"]["failed"] == 1 and "pi1" not in r and "pi2" not in r, r
    assert "edgecls verify failed on the device, the previous version stays live" in p.stdout
    after = [held(d) for d in devs]
    assert after == before  # the canary kept v1 and kept nothing of v2; the others were not reached
    for d in devs:
        assert_holds(d, bundles["v1"])


@pytest.mark.sshd
@pytest.mark.slow
def test_a_host_that_drops_mid_wave_rolls_its_wave_back_and_stops_the_play(ansible, fleet, bundles, tmp_path):
    servers, devs, known = fleet
    inv = _inventory(tmp_path / "pis.ini", servers, devs, known)
    p = run_edgecls("deploy", bundles["v1"], "--hosts", inv, "--known-hosts", known)
    assert p.returncode == 0, p.stdout + p.stderr
    v1 = [held(d)["live"] for d in devs]
    # pi2's verify says when it runs, then waits: the test cuts pi2 off right there
    mark, release = tmp_path / "verifying", tmp_path / "release"
    drop = _tool(tmp_path / "drop-edgecls", f'#!/bin/sh\nif [ "$1" = verify ]; then touch {mark}; '
                 f'while [ ! -e {release} ]; do sleep 0.2; done; exit 1; fi\n'
                 f'{EDGECLS} "$@"\n')
    inv = _inventory(tmp_path / "pis.ini", servers, devs, known, bins={2: drop})

    play = subprocess.Popen(_playbook(ansible, inv, bundles["v2"], "-e", '{"edgecls_serial": [1, 2]}'),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ansible)
    try:
        deadline = time.monotonic() + 300
        while not mark.exists() and play.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert mark.exists(), "pi2's verify never ran"
        servers[2].kill_sessions()  # the device drops off the network: sshd gone, its sessions cut
        servers[2].stop()
        out, _ = play.communicate(timeout=300)
    finally:
        release.touch()
        if play.poll() is None:
            play.kill()
    assert play.returncode != 0, out[-6000:]
    r = recap(out)
    assert r["pi2"]["unreachable"] == 1 and r["pi1"]["failed"] == 1 and r["pi0"]["failed"] == 0, r
    assert "the wave failed (pi2 of pi1, pi2)" in out and "rolled back to " + v1[1] in out, out[-6000:]
    v2 = assert_holds(devs[0], bundles["v2"])  # the canary's wave passed: it keeps v2
    assert v2 != v1[0]
    assert held(devs[1])["live"] == v1[1] and v2 in held(devs[1])["versions"]  # switched, then rolled back
    assert_holds(devs[1], bundles["v1"])
    # pi2 was cut off before its switch (its session's processes died with the connection): v1 is live and
    # whole; what the cut left (the upload, a half-verified .incoming-) goes with the next run
    assert held(devs[2])["live"] == v1[2] and v2 not in held(devs[2])["versions"]
    for name in json.loads((bundles["v1"] / "edgecls.json").read_text())["files"]:
        assert (devs[2] / "current" / name).read_bytes() == (bundles["v1"] / name).read_bytes()

    # pi2 is back: the same run again completes the rollout, and leaves nothing behind
    servers[2] = sshd.start(servers[2].home)
    known.write_text("".join(s.known_hosts.read_text() for s in servers))
    inv = _inventory(tmp_path / "pis.ini", servers, devs, known)
    p = _play(ansible, inv, bundles["v2"], "-e", '{"edgecls_serial": [1, 2]}')
    assert p.returncode == 0, p.stdout[-6000:]
    r = recap(p.stdout)
    assert r["pi0"]["changed"] == 0 and r["pi1"]["changed"] >= 1 and r["pi2"]["changed"] >= 1, r
    again = [assert_holds(d, bundles["v2"]) for d in devs]
    assert again[0] == v2 and again[1] == again[2] != v2  # this run's pack went where it was not live yet


@pytest.mark.sshd
@pytest.mark.slow
def test_a_camera_with_errors_in_the_soak_fails_its_wave_and_is_rolled_back(ansible, bundles, tmp_path):
    """The soak between waves reads the camera service's status.json over its web view, with the same
    rules as `edgecls deploy --canary` (a real `edgecls camera --serve` run by the stand-in systemctl)."""
    from test_deploy import REMOTE_EDGECLS
    from test_rollout_health import camera_args, photos, stop_service

    if not Path(sshd.SSHD).exists():
        pytest.skip("openssh-server is not installed (apt-get install openssh-server)")
    fake, units = tmp_path / "bin", tmp_path / "units"
    fake.mkdir()
    units.mkdir()
    (fake / "systemctl").symlink_to(Path(__file__).parent / "tools" / "fake_systemctl.py")
    srv = sshd.start(tmp_path / "sshd", env={"PATH": f"{fake}:/usr/bin:/bin", "EDGECLS_UNIT_DIR": str(units),
                                             "EDGECLS_SERVICE_SETTLE": "4", "PYTHONPATH": str(ROOT)})
    try:
        dev = tmp_path / "cam"
        photos(dev, good=60, bad=60)  # every other frame unreadable: the camera's errors grow
        p = run_edgecls("deploy", bundles["v1"], srv.target(dev), *srv.ssh_args(), "--remote-edgecls", REMOTE_EDGECLS,
                        "--service", camera_args(), "--no-verify")
        assert p.returncode == 0, p.stderr
        v1 = held(dev)["live"]
        inv = _inventory(tmp_path / "cam.ini", [srv], [dev], srv.known_hosts, bins={0: REMOTE_EDGECLS})
        inv.write_text(inv.read_text().replace(f"edgecls_bin={REMOTE_EDGECLS}", f"edgecls_bin={shlex.quote(REMOTE_EDGECLS)}"))
        p = _play(ansible, inv, bundles["v2"], "-e", "edgecls_soak=3", "-e", "edgecls_max_latency_ratio=0")
    finally:
        stop_service(units)
        srv.stop()
    assert p.returncode != 0, p.stdout[-6000:]
    assert recap(p.stdout)["pi0"]["failed"] == 1
    assert "the camera reported errors during the soak" in p.stdout and f"rolled back to {v1}" in p.stdout, p.stdout[-6000:]
    assert held(dev)["live"] == v1 and len(held(dev)["versions"]) == 2  # v2 was live, then rolled back
    assert_holds(dev, bundles["v1"])


@pytest.mark.slow
def test_ansible_lint_is_clean_on_the_collection(tmp_path):
    from venvs import make_venv

    try:
        python = make_venv("ansible-lint", ["ansible-lint>=24", *ANSIBLE], checkout=False)
    except RuntimeError as e:
        pytest.skip(f"ansible-lint does not install here: {str(e)[:300]}")
    env = {**os.environ, "PATH": f"{python.parent}:{os.environ['PATH']}", "ANSIBLE_HOME": str(tmp_path),
           "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "collections"), "NO_COLOR": "1"}
    p = subprocess.run([str(python.parent / "ansible-galaxy"), "collection", "install", str(COLLECTION), "-p",
                        str(tmp_path / "collections")], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run([str(python.parent / "ansible-lint"), "--offline", "--format=pep8"], cwd=COLLECTION,
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0 and "Passed" in p.stdout + p.stderr, p.stdout[-4000:] + p.stderr[-4000:]
    assert "'production'" in p.stdout + p.stderr  # the strictest profile
