"""`--seed`: the same seed gives the same training, to the bit, on the same machine; another
seed gives another one. A tiny from-scratch run on scikit-learn's digits, one epoch."""

from __future__ import annotations

import json

import pytest

from conftest import run_edgecls


@pytest.mark.slow
def test_same_seed_same_run_other_seed_other_run(tmp_path):
    from convert.demo import make_digits

    make_digits(tmp_path / "digits")

    def train(name: str, seed: int) -> tuple[list, dict]:
        out = tmp_path / name
        p = run_edgecls("train", tmp_path / "digits", "--out", out, "--size", "32", "--weights", "none",
                        "--fine-tune-epochs", "1", "--seed", str(seed), timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        assert f"seed {seed} (data order, augmentation, weight init" in p.stderr
        losses = [(r["loss"], r.get("val_loss")) for r in json.loads((out / "history.json").read_text())]
        metrics = json.loads((out / "metrics.json").read_text())
        return losses, {k: metrics[k]["confusion"] for k in ("test", "val")}

    first, again, other = train("a", 3), train("b", 3), train("c", 4)
    assert first == again  # losses bit for bit, and every prediction (the confusion matrices)
    assert first[0] != other[0]
