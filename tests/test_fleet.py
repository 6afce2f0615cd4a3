"""A fleet: Ansible inventories (INI and YAML), staged rollouts with canaries and rollback, the
fleet status table and the fleet benchmark, against three real OpenSSH servers on 127.0.0.1
ports. Each device runs this checkout's edgecls as DIR/venv/bin/edgecls; one device's runtime
is broken on purpose (it swaps red and blue, so the device-side verify fails)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

import sshd
from conftest import assert_one_line_error, run_edgecls
from deploy import inventory
from test_deploy import make_bundle

GOOD = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m edge_runtime.cli "$@"\n'
BROKEN = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m edge_runtime.cli "$@" --simulate-fault swap-rb\n'


def test_ini_inventory_groups_children_vars_ranges(tmp_path):
    inv = tmp_path / "pis.ini"
    inv.write_text("""# the house
[kitchen]
cam-k1 ansible_host=10.0.0.11 ansible_user=pi
cam-k2 ansible_host=10.0.0.12 edgecls_dir=/opt/edgecls
[garden]
cam[01:03].lan ansible_port=2201
[house:children]
kitchen
[house:vars]
ansible_user=camera
ansible_ssh_private_key_file=~/.ssh/cams
[all:vars]
edgecls_dir=classifier
""")
    hosts = inventory.load(inv)
    assert [h.name for h in hosts] == ["cam-k1", "cam-k2", "cam01.lan", "cam02.lan", "cam03.lan"]
    k1, k2, g1 = hosts[0], hosts[1], hosts[2]
    assert (k1.target.user, k1.target.host, k1.target.dir) == ("pi", "10.0.0.11", "classifier")  # host var wins
    assert (k2.target.user, k2.target.dir) == ("camera", "/opt/edgecls")  # group var; own dir
    assert k2.identity == str(Path("~/.ssh/cams").expanduser()) and g1.identity is None
    assert (g1.target.host, g1.target.port, g1.target.user) == ("cam01.lan", 2201, None)
    assert [h.name for h in inventory.load(inv, group="house")] == ["cam-k1", "cam-k2"]
    with pytest.raises(inventory.InventoryError, match=r"no group 'attic' in it; its groups: .*garden"):
        inventory.load(inv, group="attic")
    inv.write_text("[kitchen]\ncam-k1 ansible_host=10.0.0.11\ncam-k2 ansible_port=twenty\n")
    with pytest.raises(inventory.InventoryError, match=rf"^{inv}:3: cam-k2: ansible_port='twenty' is not a port"):
        inventory.load(inv)
    inv.write_text("[kitchen]\ncam-k1 10.0.0.11\n")
    with pytest.raises(inventory.InventoryError, match=rf"^{inv}:2: '10.0.0.11' after the host name is not key=value"):
        inventory.load(inv)


def test_yaml_inventory_and_its_errors(tmp_path):
    pytest.importorskip("yaml")
    inv = tmp_path / "pis.yml"
    inv.write_text("""all:
  vars:
    ansible_user: pi
  children:
    shop:
      hosts:
        till: {ansible_host: 192.168.1.5, ansible_port: 2222}
        door:
          ansible_host: 192.168.1.6
          edgecls_dir: /srv/edgecls
      children:
        back:
          hosts:
            store[a:b]:
""")
    hosts = inventory.load(inv)
    assert [h.name for h in hosts] == ["till", "door", "storea", "storeb"]
    assert (hosts[0].target.host, hosts[0].target.port, hosts[0].target.user) == ("192.168.1.5", 2222, "pi")
    assert hosts[1].target.dir == "/srv/edgecls" and hosts[2].groups == ("shop", "back")
    assert [h.name for h in inventory.load(inv, group="back")] == ["storea", "storeb"]
    inv.write_text("all:\n  hosts:\n    a: {ansible_host: 1.2.3.4\n    b:\n")
    with pytest.raises(inventory.InventoryError, match=rf"^{inv}:\d+: not valid YAML"):
        inventory.load(inv)
    inv.write_text("all:\n  children:\n    shop:\n      hostz:\n        a:\n")
    with pytest.raises(inventory.InventoryError, match=rf"^{inv}:4: group 'shop' has 'hostz'"):
        inventory.load(inv)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Three devices, each its own sshd on its own port with its own client key."""
    if not Path(sshd.SSHD).exists():
        pytest.skip("openssh-server is not installed (apt-get install openssh-server)")
    root = tmp_path_factory.mktemp("fleet")
    servers = [sshd.start(root / f"sshd{i}") for i in range(3)]
    known = root / "known_hosts"
    known.write_text("".join(s.known_hosts.read_text() for s in servers))
    yield root, servers, known
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundles")
    return {"v1": make_bundle(d / "v1-025"), "v1b": make_bundle(d / "v1-05", "mobilenet_v1_0.5_160_quant")}


def _devices(root: Path, servers, tmp: Path, broken: int | None) -> list[Path]:
    """Fresh device directories with a runtime in DIR/venv/bin/edgecls (broken on one)."""
    devs = []
    for i, _ in enumerate(servers):
        d = tmp / f"pi{i}"
        exe = d / "venv" / "bin" / "edgecls"
        exe.parent.mkdir(parents=True)
        exe.write_text(BROKEN if i == broken else GOOD)
        exe.chmod(0o755)
        devs.append(d)
    return devs


def _ini(path: Path, servers, devs) -> Path:
    lines = ["[cameras]"]
    for i, (s, d) in enumerate(zip(servers, devs)):
        lines.append(f"pi{i} ansible_host=127.0.0.1 ansible_port={s.port} ansible_user={s.user} "
                     f"ansible_ssh_private_key_file={s.key} edgecls_dir={d}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _status(known: Path, inv: Path, *extra: str) -> dict[str, dict]:
    p = run_edgecls("deploy", "--status", "--hosts", inv, "--known-hosts", known, "--json", *extra)
    assert p.returncode == 0, p.stderr
    return {r["host"]: r for r in map(json.loads, p.stdout.splitlines())}


@pytest.mark.sshd
def test_broken_canary_stops_the_rollout_and_rolls_the_canaries_back(fleet, bundles, tmp_path):
    root, servers, known = fleet
    devs = _devices(root, servers, tmp_path, broken=1)
    inv = _ini(tmp_path / "pis.ini", servers, devs)
    # v1 everywhere first: the broken runtime fails any verify, so pi1 gets it without one.
    p = run_edgecls("deploy", bundles["v1"], "--hosts", inv, "--known-hosts", known, "--group", "cameras", "--no-verify")
    assert p.returncode == 0, p.stdout + p.stderr
    before = _status(known, inv)
    assert all(before[f"pi{i}"]["name"] == "mobilenet_v1_0.25_128_quant" for i in range(3))

    report = tmp_path / "rollout.md"
    p = run_edgecls("deploy", bundles["v1b"], "--hosts", inv, "--known-hosts", known, "--canary", "2",
                    "--soak", "0", "--json", "--report", report)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stdout + p.stderr
    r = json.loads(p.stdout)
    assert not r["ok"] and "1 host(s) failed by the end of the canary" in r["stopped"]
    by = {h["host"]: h for h in r["hosts"]}
    assert by["pi0"]["stage"] == "canary" and by["pi0"]["result"] == "rolled back"
    assert "healthy, but the rollout stopped" in by["pi0"]["reason"]
    assert by["pi1"]["result"] == "failed" and "edgecls verify failed on the device" in by["pi1"]["reason"]
    assert by["pi2"]["result"] == "not reached" and "rollout stopped before this host" in by["pi2"]["reason"]
    after = _status(known, inv)
    for i in range(3):  # every device runs what it ran before
        assert after[f"pi{i}"]["current"] == before[f"pi{i}"]["current"]
        assert after[f"pi{i}"]["name"] == "mobilenet_v1_0.25_128_quant"
    assert after["pi2"]["versions"] == before["pi2"]["versions"]  # not touched at all
    assert after["pi1"]["versions"] == before["pi1"]["versions"]  # the refused upload left nothing
    md = report.read_text()
    assert "**stopped**" in md and all(f"| pi{i} |" in md for i in range(3))


@pytest.mark.sshd
def test_yaml_group_rolls_out_in_waves_then_status_and_bench(fleet, bundles, tmp_path):
    pytest.importorskip("yaml")
    root, servers, known = fleet
    devs = _devices(root, servers, tmp_path, broken=None)
    inv = tmp_path / "pis.yaml"
    hosts = "".join(f"        pi{i}: {{ansible_host: 127.0.0.1, ansible_port: {s.port}, "
                    f"ansible_ssh_private_key_file: {s.key}, edgecls_dir: {d}}}\n"
                    for i, (s, d) in enumerate(zip(servers, devs)))
    inv.write_text(f"all:\n  vars:\n    ansible_user: {servers[0].user}\n  children:\n    shop:\n      hosts:\n"
                   + hosts.replace("        pi2:", "    yard:\n      hosts:\n        pi2:"))
    p = run_edgecls("deploy", bundles["v1"], "--hosts", inv, "--group", "shop", "--known-hosts", known,
                    "--canary", "1", "--wave-size", "1", "--soak", "0", "--report", tmp_path / "r.md")
    assert p.returncode == 0, p.stdout + p.stderr
    rows = p.stdout.splitlines()
    assert rows[1].split()[:3] == ["pi0", "canary", "healthy"] and rows[2].split()[:4] == ["pi1", "wave", "1", "healthy"]
    assert len(rows) == 3  # the yard's pi2 is not in the group
    assert not (devs[2] / "current").exists()

    p = run_edgecls("deploy", "--status", "--hosts", inv, "--known-hosts", known)
    assert p.returncode == 0, p.stderr
    table = p.stdout.splitlines()
    assert table[0].split() == ["host", "live", "version", "bundle", "since", "kept", "service", "FPS", "drift"]
    assert "mobilenet_v1_0.25_128_quant" in table[1] and "ago)" in table[1] and table[3].split()[1] == "(nothing)"

    out = tmp_path / "bench.md"
    p = run_edgecls("bench", bundles["v1"], "--hosts", inv, "--group", "shop", "--known-hosts", known,
                    "--runs", "5", "--warmup", "1", "--in-process", "--markdown", out, "--save", tmp_path / "b.json")
    assert p.returncode == 0, p.stderr[-2000:]
    results = json.loads((tmp_path / "b.json").read_text())
    assert [r["machine"]["board"].split(":")[0] for r in results] == ["pi0", "pi1"]
    assert all(r["results"][0]["status"] == "ok" for r in results)
    assert "pi0: " in out.read_text() and "pi1: " in out.read_text()


def test_rollout_options_are_checked(tmp_path):
    inv = tmp_path / "pis.ini"
    inv.write_text("[a]\nh1 ansible_host=127.0.0.1\n")
    p = run_edgecls("deploy", tmp_path, "pi@h", "--canary", "1")
    assert_one_line_error(p, "--canary and --wave-size stage a rollout over an inventory")
    p = run_edgecls("deploy", "--status", "--hosts", inv, "--group", "b")
    assert_one_line_error(p, f"{inv}: no group 'b' in it")
