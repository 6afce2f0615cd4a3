"""Disk full on the device, deploy side (issue 28's fault suite): the device's folder is a small
tmpfs that holds one bundle. A deploy of a second bundle stops before it writes anything, with one
line naming the folder, the space needed and the space free; the live version is untouched and
still verifies, and the disk is as it was. Once space is freed, the same deploy finishes. A full
disk that the check did not foresee (ENOSPC in the middle of the unpack) ends the same way."""

from __future__ import annotations

import io
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_edgecls
from faultkit import MARKS, resize_tmpfs, small_tmpfs
from test_deploy import REMOTE_EDGECLS, make_bundle

from deploy import remote, run

pytestmark = MARKS
NAMES = {"v1": "mobilenet_v1_0.25_128_quant", "v2": "mobilenet_v1_0.5_160_quant"}  # 2.2 MiB, 3.1 MiB unpacked


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    d = tmp_path_factory.mktemp("bundles")
    return {k: make_bundle(d / k, name) for k, name in NAMES.items()}


def deploy(server, bundle: Path, dev: Path):
    return run_edgecls("deploy", bundle, server.target(dev), *server.ssh_args(), "--remote-edgecls", REMOTE_EDGECLS)


def free(dev: Path) -> int:
    st = os.statvfs(dev)
    return st.f_bavail * st.f_frsize


def live_name(dev: Path) -> str:
    return json.loads((dev / "current" / "edgecls.json").read_text())["name"]


def deploy_local(bundle: Path, dev: Path) -> subprocess.CompletedProcess[bytes]:
    """The upload step run on the device itself, as the Ansible collection runs it."""
    data, version = run.pack(bundle)
    return subprocess.run(["sh", "-c", remote.UPLOAD, "edgecls-deploy", str(dev), version, "5", "", "yes",
                           str(remote.space_needed(io.BytesIO(data)))], input=data, capture_output=True, check=False,
                          timeout=120)


def assert_only(dev: Path, versions: int, name: str) -> None:
    """``name`` is live and verifies (`edgecls verify`, as a user checks it); ``versions`` kept,
    nothing half-made (no upload in progress, no switch half-done)."""
    assert live_name(dev) == name
    p = run_edgecls("verify", dev / "current", "--backend", "cpu")
    assert p.returncode == 0, p.stdout + p.stderr
    assert len([v for v in (dev / "versions").iterdir() if not v.name.startswith(".")]) == versions
    assert not list((dev / "versions").glob(".incoming-*")) and not (dev / ".current.new").exists()


def test_a_deploy_into_a_full_device_names_the_space_keeps_the_live_version_and_reruns(server, bundles, tmp_path):
    with small_tmpfs(tmp_path / "device", "4m") as dev:
        p = deploy(server, bundles["v1"], dev)
        assert p.returncode == 0, p.stderr
        assert_only(dev, 1, NAMES["v1"])
        before = free(dev)
        need = remote.space_needed(io.BytesIO(run.pack(bundles["v2"])[0]))
        assert before < need  # the test's premise: v2 does not fit beside v1

        p = deploy(server, bundles["v2"], dev)
        err = assert_one_line_error(p, f"not enough space in {dev}: {before} bytes", "are free",
                                    f"needs {need} bytes", "more there", "run the same deploy again",
                                    "previous version stays live")
        assert_only(dev, 1, NAMES["v1"])
        assert free(dev) == before, err  # nothing written, nothing left behind

        resize_tmpfs(dev, "8m")  # space freed
        p = deploy(server, bundles["v2"], dev)
        assert p.returncode == 0, p.stderr
        assert_only(dev, 2, NAMES["v2"])


def test_a_disk_that_fills_during_the_unpack_leaves_nothing_behind(bundles, tmp_path):
    """The device-side step run as the Ansible collection runs it (on the device, its tar from a
    file), by a driver that did not say the size ($6 = 0): the check cannot stop it, so tar meets
    ENOSPC. The step removes what it unpacked and says so in the same words; the rerun with the
    size checked finishes."""
    data, version = run.pack(bundles["v2"])
    tar = tmp_path / "v2.tar"
    tar.write_bytes(data)

    def upload(dev: Path, need: int) -> subprocess.CompletedProcess[str]:
        with tar.open("rb") as stdin:
            return subprocess.run(["sh", "-c", remote.UPLOAD, "edgecls-deploy", str(dev), version, "5", "", "yes",
                                   str(need)], stdin=stdin, capture_output=True, text=True, check=False,
                                  timeout=120)

    with small_tmpfs(tmp_path / "device", "4m") as dev:
        p = deploy_local(bundles["v1"], dev)
        assert p.returncode == 0, p.stderr
        before = free(dev)
        p = upload(dev, 0)
        assert p.returncode == remote.EXIT_SPACE, p.stderr
        said = remote.device_words(p.stderr)
        assert len(said) == 1 and "Traceback" not in p.stderr, p.stderr
        for part in (f"the disk filled up during the unpack (nothing was kept) in {dev}: {before} bytes",
                     "are free", "run the same deploy again"):
            assert part in said[0], said[0]
        assert_only(dev, 1, NAMES["v1"])
        assert free(dev) == before  # the partial upload is gone

        p = upload(dev, remote.space_needed(io.BytesIO(data)))  # the size known: refused before the unpack
        assert p.returncode == remote.EXIT_SPACE and "not enough space" in p.stderr, p.stderr
        assert free(dev) == before

        resize_tmpfs(dev, "8m")
        p = upload(dev, remote.space_needed(io.BytesIO(data)))
        assert p.returncode == 0 and p.stdout.strip() == f"live {version}", p.stderr
        assert_only(dev, 2, NAMES["v2"])

