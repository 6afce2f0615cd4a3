"""`edgecls pull` against a real OpenSSH server on 127.0.0.1 (this machine plays the Pi): photos to
their class folders, mined frames to _review/<predicted>/, each file once, nothing lost when the
connection is cut, and --delete-after deletes only what is verified at home."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import assert_one_line_error, run_edgecls

pytestmark = pytest.mark.sshd


def jpeg(path: Path, seed: int, size=(64, 48)) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    a = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(a).save(path, quality=95)
    return path.read_bytes()


def device_dir(d: Path) -> dict[str, bytes]:
    """What collect and camera --save-uncertain leave on a device: class folders, frames and their index,
    and a collect's temporary file (never pulled)."""
    files = {}
    for i in range(3):
        files[f"cat/2025010{i}-000000-000000.jpg"] = jpeg(d / "cat" / f"2025010{i}-000000-000000.jpg", i)
    files["empty/20250101-000000-000000.jpg"] = jpeg(d / "empty" / "20250101-000000-000000.jpg", 10)
    index = []
    for i, (label, score) in enumerate([("Egyptian cat", 0.41), ("empty", 0.33)]):
        name = f"20250102-00000{i}-000000_{label.replace(' ', '_')}_{score:.3f}.jpg"
        files[name] = jpeg(d / name, 20 + i)
        index.append({"file": name, "t": 1.0, "frame": i, "label": label, "score": score, "top_k": []})
    (d / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in index))
    (d / "cat" / ".tmp-abc.jpg").write_bytes(b"half a photo")
    return files


def pull(server, src: Path, into: Path, *extra: str):
    return run_edgecls("pull", server.target(src), "--into", into, *server.ssh_args(), "--json", *extra)


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def local_images(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.jpg"))
            if not any(part.startswith(".") for part in p.relative_to(root).parts)}


def test_pull_twice_copies_each_file_once_into_the_right_folder(server, tmp_path):
    dev, home = tmp_path / "device", tmp_path / "photos"
    files = device_dir(dev)
    (home / "cat").mkdir(parents=True)
    (home / "cat" / "20250100-000000-000000.jpg").write_bytes(files["cat/20250101-000000-000000.jpg"])  # already here
    (home / "cat" / "20250102-000000-000000.jpg").write_bytes(b"a different local photo with the same name")
    p = pull(server, dev, home)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["listed"] == 6 and r["known"] == 1 and len(r["copied"]) == 5 and not r["error"]
    got = local_images(home)
    assert got["cat/20250102-000000-000000.jpg"] == b"a different local photo with the same name"  # not overwritten
    by_hash = {sha(v): k for k, v in got.items()}
    for rel, data in files.items():
        assert sha(data) in by_hash, rel
    assert by_hash[sha(files["cat/20250102-000000-000000.jpg"])].startswith("cat/20250102-000000-000000_")
    assert by_hash[sha(files["empty/20250101-000000-000000.jpg"])] == "empty/20250101-000000-000000.jpg"
    assert by_hash[sha(files["20250102-000000-000000_Egyptian_cat_0.410.jpg"])] == \
        "_review/Egyptian_cat/20250102-000000-000000_Egyptian_cat_0.410.jpg"
    assert by_hash[sha(files["20250102-000001-000000_empty_0.330.jpg"])].startswith("_review/empty/")
    assert len(got) == 7  # 2 local + 5 copied, the temporary file left alone
    # Review moved one frame, discarded (deleted) another: the second pull still copies nothing.
    moved = home / "_review" / "empty" / "20250102-000001-000000_empty_0.330.jpg"
    moved.rename(home / "empty" / moved.name)
    (home / "_review" / "Egyptian_cat" / "20250102-000000-000000_Egyptian_cat_0.410.jpg").unlink()
    p = pull(server, dev, home)
    r = json.loads(p.stdout)
    assert p.returncode == 0 and r["copied"] == [] and r["known"] == 6, p.stdout + p.stderr
    assert len(local_images(home)) == 6
    assert len(list(dev.rglob("*.jpg"))) == 7  # nothing deleted on the device without --delete-after


def test_delete_after_deletes_only_verified_files(server, tmp_path):
    dev, home = tmp_path / "device", tmp_path / "photos"
    files = device_dir(dev)
    p = pull(server, dev, home)
    assert p.returncode == 0, p.stderr
    # New on the device since that pull: one photo (copied now, then deleted with the 6 verified before)
    late = jpeg(dev / "cat" / "20250109-000000-000000.jpg", 99)
    p = pull(server, dev, home, "--delete-after")
    r = json.loads(p.stdout)
    assert p.returncode == 0 and r["deleted"] == 7 and len(r["copied"]) == 1, p.stdout + p.stderr
    assert sha(late) in {sha(v) for v in local_images(home).values()}
    left = sorted(x.relative_to(dev).as_posix() for x in dev.rglob("*") if x.is_file())
    assert left == ["cat/.tmp-abc.jpg", "index.jsonl"]  # only pulled photos were deleted
    assert len(local_images(home)) == len(files) + 1


def test_delete_after_keeps_a_file_that_changed_on_the_device(server, tmp_path, monkeypatch):
    """The device re-checks each sha256 before deleting: a file replaced after it was copied stays."""
    from deploy import pull as pull_mod, ssh

    dev, home = tmp_path / "device", tmp_path / "photos"
    device_dir(dev)
    target = ssh.Target.parse(server.target(dev), server.port)
    opts = ssh.Options(identity=str(server.key), known_hosts=str(server.known_hosts))
    real = pull_mod._delete

    def change_then_delete(t, o, files):
        jpeg(dev / "cat" / "20250100-000000-000000.jpg", 5)  # replaced on the device after the copy
        return real(t, o, files)

    monkeypatch.setattr(pull_mod, "_delete", change_then_delete)
    rep = pull_mod.pull(target, opts, home, delete_after=True)
    assert not rep.error and len(rep.copied) == 6 and rep.deleted == 5
    assert (dev / "cat" / "20250100-000000-000000.jpg").exists()


def test_a_cut_connection_loses_nothing_and_a_rerun_completes(server, tmp_path):
    dev, home = tmp_path / "device", tmp_path / "photos"
    files = {}
    for i in range(24):
        files[f"cat/{i:03d}.jpg"] = jpeg(dev / "cat" / f"{i:03d}.jpg", 100 + i, size=(200, 150))  # ~90 kB each
    total = sum(map(len, files.values()))
    cmd = [sys.executable, "-m", "edge_runtime.cli", "pull", server.target(dev), "--into", str(home),
           *server.ssh_args(), "--limit", "400", "--delete-after"]  # ~2 MB at 400 KiB/s: 5 s
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline and len(list((home / "cat").glob("*.jpg"))) < 3:
        time.sleep(0.05)
    assert proc.poll() is None, "the transfer finished before the connection could be cut"
    server.kill_sessions()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "run the same pull again" in err, err
    assert "Traceback" not in err
    got = local_images(home)
    assert 3 <= len(got) < 24 and total > sum(map(len, got.values()))
    wanted = {sha(v) for v in files.values()}
    assert all(sha(v) in wanted for v in got.values())  # every file at home is whole
    assert not list(home.rglob(".tmp-*"))
    assert len(list(dev.rglob("*.jpg"))) == 24  # a cut pull deletes nothing
    p = pull(server, dev, home, "--delete-after")
    r = json.loads(p.stdout)
    assert p.returncode == 0 and len(r["copied"]) == 24 - len(got) and r["deleted"] == 24, p.stdout + p.stderr
    assert {sha(v) for v in local_images(home).values()} == wanted
    assert not list(dev.rglob("*.jpg"))


def test_refusals_name_the_fix(server, tmp_path):
    p = run_edgecls("pull", server.target(tmp_path / "nothing"), "--into", tmp_path / "h", *server.ssh_args())
    assert_one_line_error(p, "no directory", "nothing")
    p = run_edgecls("pull", f"{server.user}@127.0.0.1", "--into", tmp_path / "h", *server.ssh_args())
    assert_one_line_error(p, "pi@HOST:")
    other = tmp_path / "kh"
    other.write_text("")
    p = run_edgecls("pull", server.target(tmp_path), "--into", tmp_path / "h", "--port", str(server.port),
                    "--identity", server.key, "--known-hosts", other)
    assert_one_line_error(p, "unknown host key")


def test_hosts_file_pulls_the_same_dir_from_every_device(server, tmp_path):
    dev, home = tmp_path / "device", tmp_path / "photos"
    files = device_dir(dev)
    hosts = tmp_path / "pis.txt"
    hosts.write_text(f"# two names for the one device here\nssh://{server.user}@127.0.0.1:{server.port}/elsewhere\n"
                     f"{server.user}@localhost\n")
    (server.known_hosts).write_text(server.known_hosts.read_text() + server.known_hosts.read_text().replace(
        "[127.0.0.1]", "[localhost]"))
    p = run_edgecls("pull", "--hosts", hosts, dev, "--into", home, *server.ssh_args(), "--json")
    rows = [json.loads(l) for l in p.stdout.splitlines()]
    assert p.returncode == 0, p.stderr
    assert [len(r["copied"]) for r in rows] == [6, 0] and rows[1]["known"] == 6  # the second device: all known
    assert len(local_images(home)) == len(files)


def test_a_local_write_error_names_the_path_not_the_connection(server, tmp_path):
    """Issue 28 item 4: a file that could not be written at home was reported as a lost connection."""
    dev, home = tmp_path / "device", tmp_path / "photos"
    device_dir(dev)
    home.mkdir()
    (home / "empty").write_text("a file where the class folder would go")
    p = run_edgecls("pull", server.target(dev), "--into", home, *server.ssh_args())
    err = assert_one_line_error(p, f"cannot write {home / 'empty'}", "at home, not on the device",
                                "run the same pull again")
    assert "connection" not in err and "transfer stopped" not in err
    (home / "empty").unlink()
    p = pull(server, dev, home)
    assert p.returncode == 0 and json.loads(p.stdout)["error"] == "", p.stderr
    assert sorted(map(sha, local_images(home).values())) == sorted(map(sha, device_dir(tmp_path / "again").values()))


def test_identical_photos_are_named_as_duplicates(server, tmp_path):
    """Issue 28 item 18: five byte-identical photos came home as '1 new' without a word about the other four."""
    dev, home = tmp_path / "device", tmp_path / "photos"
    still = jpeg(dev / "cat" / "20250101-000000-000000.jpg", 7)
    for i in range(1, 5):
        (dev / "cat" / f"20250101-00000{i}-000000.jpg").write_bytes(still)
    p = run_edgecls("pull", server.target(dev), "--into", home, *server.ssh_args())
    assert p.returncode == 0, p.stderr
    assert "1 new" in p.stdout
    assert "4 skipped as byte-identical copies of cat/20250101-000000-000000.jpg (4)" in p.stdout
    r = json.loads(pull(server, dev, tmp_path / "other").stdout)
    assert len(r["copied"]) == 1 and r["duplicates"] == {f"cat/20250101-00000{i}-000000.jpg":
                                                          "cat/20250101-000000-000000.jpg" for i in range(1, 5)}


def test_a_failed_pull_prints_no_summary_and_makes_no_folder(server, tmp_path):
    """Issue 28 item 27: a pull that failed printed '0 new ...' first and created --into."""
    home = tmp_path / "h"
    p = run_edgecls("pull", server.target(tmp_path / "nothing"), "--into", home, *server.ssh_args())
    assert_one_line_error(p, "no directory")
    assert p.stdout == "" and not home.exists()
