"""The `edgecls` command as a whole: its help and the shared option checks."""

from __future__ import annotations

import pytest

from conftest import run_edgecls


def test_help_groups_the_commands_by_where_they_run_with_an_example_each():
    p = run_edgecls("--help")
    assert p.returncode == 0, p.stderr
    text = p.stdout
    device, workstation = text.index("commands on the device"), text.index("commands on the workstation")
    assert device < workstation
    for name in ("classify", "camera", "verify", "bench", "doctor"):
        assert device < text.index(f"\n  {name} ") < workstation, name
    for name in ("train", "convert", "deploy", "demo"):
        assert text.index(f"\n  {name} ") > workstation, name
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("  ") and not line.startswith("   ") and line.split()[0] in ("classify", "train", "deploy"):
            assert lines[i + 1].strip().startswith("e.g. edgecls " + line.split()[0])
    assert "The loop: collect -> train" in text


@pytest.mark.parametrize("args,fragment", [
    (["bench", "x.tflite", "--warmup", "-1"], "0 or more"),
    (["bench", "x.tflite", "--seconds", "0"], "above 0"),
    (["camera", "x.tflite", "--fps", "-2"], "0 or more"),
    (["camera", "x.tflite", "--smooth", "0"], "at least 1"),
    (["bench", "x.tflite", "--threads", "1,0"], "from 1 to 256"),
])
def test_every_count_and_rate_is_checked_before_anything_runs(args, fragment):
    p = run_edgecls(*args)
    assert p.returncode == 2 and fragment in p.stderr and "Traceback" not in p.stderr


def test_bench_compare_is_a_subcommand_with_its_own_help():
    p = run_edgecls("bench", "compare", "--help")
    assert p.returncode == 0 and "usage: edgecls bench compare" in p.stdout and "--save" in p.stdout
