"""A rollout over 10 real sshd hosts where one host stops answering before it is reached (SIGSTOP)
and another, whose camera service is being soaked, has its sshd killed in the middle of the soak.
The rollout must end within its timeouts, say for each host what happened, roll back every host
this run switched, and say where it could not."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

import sshd
from conftest import CORAL, ROOT
from deploy import inventory, rollout, run, ssh
from faultkit import MARKS
from test_deploy import REMOTE_EDGECLS, make_bundle

pytestmark = MARKS
DEAD, SILENT = 5, 9  # the host killed mid-soak, the host that stops answering
UNIT = "edgecls-camera.service"


@pytest.fixture
def fleet(tmp_path):
    if not Path(sshd.SSHD).exists():
        pytest.skip("openssh-server is not installed (apt-get install openssh-server)")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "systemctl").symlink_to(ROOT / "tests" / "tools" / "fake_systemctl.py")
    units = tmp_path / "units"
    units.mkdir()
    servers = []
    try:
        for i in range(10):
            env = {"PYTHONPATH": str(ROOT)}
            if i == DEAD:  # the one device with a camera service (stand-in systemctl, units of its own)
                env.update(PATH=f"{fake}:/usr/bin:/bin", EDGECLS_UNIT_DIR=str(units), EDGECLS_SERVICE_SETTLE="1")
            servers.append(sshd.start(tmp_path / f"sshd{i}", env=env))
        yield servers, units
    finally:
        pid = units / "edgecls-camera.service.pid"
        if pid.exists():
            try:
                os.killpg(int(pid.read_text()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
        for s in servers:
            s.proc.send_signal(signal.SIGCONT)
            s.stop()


def test_a_dead_host_in_a_rollout_ends_in_time_is_reported_and_the_wave_is_rolled_back(fleet, tmp_path):
    servers, units = fleet
    known = tmp_path / "known_hosts"
    known.write_text("".join(s.known_hosts.read_text() for s in servers))
    opts = ssh.Options(known_hosts=str(known))
    hosts, devs = [], []
    for i, s in enumerate(servers):
        devs.append(tmp_path / f"pi{i}")
        hosts.append(inventory.Host(f"pi{i}", ssh.Target(s.user, "127.0.0.1", str(devs[-1]), s.port), str(s.key)))
    v1 = run.pack(make_bundle(tmp_path / "v1"))
    photos = devs[DEAD] / "photos"
    photos.mkdir(parents=True)
    for k in range(200):
        shutil.copy(CORAL / "parrot.jpg", photos / f"{k:03d}.jpg")
    camera = ["--source", "photos", "--fps", "4", "--serve", f"127.0.0.1:{sshd.free_port()}"]
    first = run.many(hosts, lambda h: run.deploy(v1, h.target, h.options(opts), verify=False,
                                                 remote_edgecls=REMOTE_EDGECLS,
                                                 service=camera if h.name == f"pi{DEAD}" else None))
    assert all(o.ok for o in first), [o.message for o in first if not o.ok]
    old = {h.name: os.readlink(d / "current") for h, d in zip(hosts, devs)}

    v2 = run.pack(make_bundle(tmp_path / "v2", "mobilenet_v1_0.5_160_quant"))
    servers[SILENT].proc.send_signal(signal.SIGSTOP)  # accepts connections, never answers

    def kill_mid_soak():
        """Once the health probe asks the restarted service whether it runs (the soak's first probe)."""
        log = units / "systemctl.log"
        deadline = time.time() + 90
        while time.time() < deadline:
            lines = log.read_text().splitlines()
            restarts = [k for k, line in enumerate(lines) if line.startswith("restart")]
            if len(restarts) >= 2 and f"is-active {UNIT}" in lines[restarts[-1]:]:
                break
            time.sleep(0.1)
        time.sleep(1.0)  # inside the 8 s soak
        servers[DEAD].kill_sessions()
        servers[DEAD].stop()

    killer = threading.Thread(target=kill_mid_soak, daemon=True)
    killer.start()
    t0 = time.perf_counter()
    rep = rollout.rollout(hosts, "v2", v2[1], opts, rollout.Policy(canary=2, soak=8, parallel=8),
                          lambda h, o: run.deploy(v2, h.target, o, verify=False), verify=False)
    took = time.perf_counter() - t0
    killer.join(5)
    print(f"\nrollout of 10 hosts, one killed mid-soak, one silent: {took:.1f} s\n{rep.table()}")
    assert took < 90, took  # connect timeout 10 s, probes 60 s at most: nothing waits for ever
    by = {h.host: h for h in rep.hosts}
    assert rep.stopped and "by the end of the wave 1" in rep.stopped
    dead, silent = by[f"pi{DEAD}"], by[f"pi{SILENT}"]
    assert dead.switched and dead.result == "rollback failed" and "health check failed" in dead.reason
    assert "ROLLBACK FAILED" in dead.reason and dead.after == v2[1]  # live there, and the report says so
    assert os.readlink(devs[DEAD] / "current") == f"versions/{v2[1]}"
    assert silent.result == "failed" and not silent.switched and "cannot connect" in silent.reason, silent
    for i, (h, d) in enumerate(zip(hosts, devs)):
        assert os.readlink(d / "current") == (f"versions/{v2[1]}" if i == DEAD else old[h.name]), h.name
        if i not in (DEAD, SILENT):
            assert by[h.name].result == "rolled back" and by[h.name].switched, by[h.name]
    md = rep.markdown()
    assert all(f"| pi{i} |" in md for i in range(10)) and "ROLLBACK FAILED" in md
