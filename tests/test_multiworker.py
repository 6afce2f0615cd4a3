"""Multi-machine training: `edgecls train` as two worker processes on 127.0.0.1 ports with
TF_CONFIG (MultiWorkerMirroredStrategy), as two machines would run it. Both workers take part
(the collectives block until both are there), only the chief writes the run directory, and the
model trains. A few dozen 32 px photos, so it takes seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import sshd
from test_train import SMALL, copy_photos


def test_two_workers_train_one_run_only_the_chief_writes(tmp_path):
    data = copy_photos(tmp_path / "d", per_class=10)
    out = tmp_path / "run"  # the same --out on both, as on a shared disk: only the chief may write it
    ports = [sshd.free_port(), sshd.free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    args = [sys.executable, "-m", "edge_runtime.cli", "train", str(data), "--out", str(out), *SMALL,
            "--epochs", "2", "--fine-tune-epochs", "1", "--patience", "50"]
    procs = []
    for i in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
               "TMPDIR": str(tmp_path / f"tmp{i}")}
        (tmp_path / f"tmp{i}").mkdir()
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    logs = [p.communicate(timeout=600)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    chief, worker = logs
    assert "worker 0 (chief), 2 replicas in sync" in chief, chief[-2000:]
    assert "worker 1, 2 replicas in sync" in worker, worker[-2000:]
    # Both ran every epoch: each worker prints each epoch's line (phase 1: 2 epochs, phase 2: 1).
    for log in logs:
        assert [l.split()[1] for l in log.splitlines() if l.startswith("Epoch ")] == ["1/2", "2/2", "1/1"], log[-2000:]
    assert "took part in the training; the chief writes" in worker
    # Only the chief wrote: no worker files in the run, the worker's scratch is gone.
    names = {p.name for p in out.iterdir()}
    assert {"model.keras", "metrics.json", "history.json", "config.json", "checkpoint"} <= names
    assert not [p for p in out.rglob("*") if "worker" in p.name], sorted(out.rglob("*"))
    assert list((tmp_path / "tmp1").iterdir()) == []
    history = json.loads((out / "history.json").read_text())
    assert [(h["phase"], h["epoch"]) for h in history] == [(1, 1), (1, 2), (2, 1)]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["count"] > 0
    # The model learned: the validation loss after the fine-tuning is below the first epoch's.
    assert history[-1]["val_loss"] < history[0]["val_loss"], history
