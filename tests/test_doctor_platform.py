"""`edgecls doctor` names the OS release and Python, and says what to do about the combinations
known not to work (issue 30 item 5): a 32-bit userland (no ai-edge-litert wheels, even on a 64-bit
kernel), a Python that ai-edge-litert has no wheel for, tflite-runtime with numpy 2."""

from __future__ import annotations

from conftest import run_edgecls

from edge_runtime.cli.doctor import platform_checks
from edge_runtime.system.machine import os_release

TRIXIE = {"PRETTY_NAME": "Debian GNU/Linux 13 (trixie)", "VERSION_CODENAME": "trixie"}
LITERT = {"ai_edge_litert": "2.3.0", "tflite_runtime": None, "tensorflow": None}


def test_os_release_is_read_from_the_file(tmp_path):
    f = tmp_path / "os-release"
    f.write_text('PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nNAME="Debian GNU/Linux"\nVERSION_CODENAME=trixie\n'
                 "# a comment\nID=debian\n")
    assert os_release(str(f)) == {**TRIXIE, "NAME": "Debian GNU/Linux", "ID": "debian"}
    assert os_release(str(tmp_path / "missing")) == {}


def test_a_64_bit_pi_on_trixie_is_named_and_fine():
    (c,) = platform_checks(TRIXIE, "aarch64", 64, (3, 13), LITERT)
    assert (c.name, c.status) == ("os", "ok")
    assert c.found == "Debian GNU/Linux 13 (trixie), aarch64 kernel, 64-bit userland, Python 3.13"


def test_a_32_bit_userland_on_a_64_bit_kernel_says_what_works():
    checks = platform_checks({"PRETTY_NAME": "Raspbian GNU/Linux 12 (bookworm)"}, "aarch64", 32, (3, 11),
                             {"ai_edge_litert": None, "tflite_runtime": "2.14.0", "tensorflow": None})
    warn = checks[1]
    assert warn.status == "warn" and "32-bit userland on a 64-bit kernel" in warn.found
    assert "64-bit Raspberry Pi OS" in warn.fix and "armv7l" in warn.fix


def test_a_python_without_litert_wheels_says_which_to_use():
    checks = platform_checks(TRIXIE, "aarch64", 64, (3, 14), {"ai_edge_litert": None})
    assert checks[1].status == "warn" and "3.11 to 3.13" in checks[1].found and "python3.13" in checks[1].fix


def test_doctor_prints_the_os_line():
    p = run_edgecls("doctor")
    assert any(line[7:].split()[:1] == ["os"] for line in p.stdout.splitlines()), p.stdout


def test_need_exits_1_unless_the_named_checks_are_ok():
    """`edgecls doctor --need CHECK`: for scripts; a name that is no check is a usage error naming the checks."""
    from conftest import run_edgecls

    from edge_runtime.cli.doctor import checks

    status = {c.name: c.status for c in checks()}
    ok = next(n for n, s in status.items() if s == "ok")
    p = run_edgecls("doctor", "--need", ok, "--need", "interpreter")
    assert p.returncode == 0, p.stderr
    assert f"] {ok}" in p.stdout
    gap = next((n for n, s in status.items() if s != "ok"), None)
    if gap is not None:  # this machine lacks something (a CI machine has no Coral): --need says so in the status
        assert run_edgecls("doctor", "--need", gap).returncode == 1
    p = run_edgecls("doctor", "--need", "coral")
    assert p.returncode == 2 and "no check named 'coral'" in p.stderr and "edgetpu devices" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
