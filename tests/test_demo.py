"""`edgecls demo`, the README's main job: offline, on scikit-learn's digits, end to end."""

from __future__ import annotations

import json

import pytest

from conftest import assert_one_line_error, run_edgecls


@pytest.mark.slow
def test_demo_trains_converts_classifies_and_benchmarks_offline(tmp_path):
    out = tmp_path / "demo"
    p = run_edgecls("demo", "--out", out, timeout=900)
    assert p.returncode == 0, p.stderr[-4000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["images"] == 1797 and s["test_images"] > 200
    assert s["int8_test_top1"] >= 0.90, s
    assert s["verify_ok"] is True
    assert sum(e["true"] == e["predicted"] for e in s["examples"]) >= 4, s["examples"]
    assert s["invoke_ms_p50"] > 0 and set(s["end_to_end_ms"]) == {"decode", "resize", "input", "set_get", "invoke", "postprocess", "total", "classify"}
    assert "int8" in p.stdout and "bundle:" in p.stdout
    # A second run replaces its own output; a directory it did not make is never touched.
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    q = run_edgecls("demo", "--out", foreign)
    assert_one_line_error(q, str(foreign), "not made by edgecls demo")
    assert (foreign / "notes.txt").read_text() == "keep me"
