#!/usr/bin/python
"""edgecls_health: after a switch, is the device healthy? The soak of edgecls deploy --canary, on the device."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: edgecls_health
short_description: Check a device after a switch - the camera's soak, or edgecls verify where no camera runs
description:
  - Where the camera service named in C(DIR/service) runs C(edgecls camera --serve), its C(/status.json)
    must show frames advancing without errors for O(soak) seconds (counted from its first answer, which a
    restarted camera gets 15 s to give) and a latency within O(max_latency_ratio) of O(before)'s - the
    same judgement as C(edgecls deploy --canary) (edgecls's C(deploy/remote.py)).
  - Where no camera service runs, the device's C(edgecls verify) reruns the live bundle's golden photos.
  - Fails with the problems it found; changes nothing.
options:
  dir:
    description: The device's bundle folder (C(edgecls_dir)).
    type: str
    default: edgecls
  edgecls_bin:
    description: The device's edgecls command (see M(edgecls.fleet.edgecls_facts)).
    type: str
    default: edgecls
  soak:
    description: Seconds the camera's frames must advance without errors.
    type: float
    default: 10
  max_latency_ratio:
    description: The camera's latency may grow at most this many times (0 - not checked).
    type: float
    default: 1.5
  before:
    description: The probe from before the switch (C(edgecls.probe) of M(edgecls.fleet.edgecls_facts)), for the latency.
    type: dict
author:
  - edgecls
"""

EXAMPLES = r"""
- name: Soak
  edgecls.fleet.edgecls_health:
    dir: "{{ edgecls_dir }}"
    soak: 30
    before: "{{ ansible_facts.edgecls.probe }}"
"""

RETURN = r"""
checked:
  description: What was checked - C(camera) (the soak) or C(verify).
  returned: always
  type: str
facts:
  description: What the soak saw (frames, fps, latency_ms, service).
  returned: always
  type: dict
problems:
  description: Why the device is not healthy (empty - healthy).
  returned: always
  type: list
  elements: str
"""

import os
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgecls.fleet.plugins.module_utils import edgecls_device as device
from ansible_collections.edgecls.fleet.plugins.module_utils import edgecls_remote as remote


def serving(directory: str, first: dict) -> dict:
    """The first probe whose status.json answered (the soak starts there), waiting up to STARTUP_S."""
    deadline = time.monotonic() + remote.STARTUP_S
    while first["status"] is None and first["state"] == "active" and time.monotonic() < deadline:
        time.sleep(1.0)
        first = device.probe(directory)
    return first


def verify_live(directory: str, asked: str) -> list[str]:
    exe = device.find_edgecls(directory, asked)
    if not exe:
        return [f"no edgecls runtime on the device ({directory}/venv or {asked} on the PATH) to verify the live bundle"]
    p = subprocess.run(["sh", "-c", device.verify_command(exe) + ' "$1"', "verify", os.path.join(directory, "current")],
                       capture_output=True, text=True, timeout=600)
    if p.returncode == 0:
        return []
    return ["edgecls verify failed on the live bundle: " + "; ".join(
        remote.verify_causes(p.stderr) or [(p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]])]


def check(p: dict, directory: str) -> tuple[str, dict, list[str]]:
    facts: dict = {}
    first = device.probe(directory)
    if not first["current"]:
        return "nothing", facts, [f"nothing is live in {directory}"]
    now = remote.soak_start(first, facts)
    if now is not None:
        if facts.get("service") is None:
            return "verify", facts, verify_live(directory, p["edgecls_bin"])
        return "camera", facts, now
    first = serving(directory, first)
    time.sleep(max(0.0, p["soak"]))
    last = device.probe(directory)
    return "camera", facts, remote.soak_verdict(p["before"], first, last, p["soak"], p["max_latency_ratio"] or None,
                                                facts)


def main() -> None:
    module = AnsibleModule(argument_spec={"dir": {"type": "str", "default": "edgecls"},
                                          "edgecls_bin": {"type": "str", "default": "edgecls"},
                                          "soak": {"type": "float", "default": 10.0},
                                          "max_latency_ratio": {"type": "float", "default": 1.5},
                                          "before": {"type": "dict"}},
                           supports_check_mode=True)
    p = module.params
    if p["soak"] < 0 or p["max_latency_ratio"] < 0:
        module.fail_json(msg="soak and max_latency_ratio must be 0 or more")
    try:
        checked, facts, problems = check(p, device.absolute_dir(p["dir"]))
    except (ValueError, RuntimeError, OSError, subprocess.SubprocessError) as e:
        module.fail_json(msg=f"health check failed: {e}", checked="error", facts={}, problems=[str(e)])
    if problems:
        module.fail_json(msg="; ".join(problems), checked=checked, facts=facts, problems=problems)
    module.exit_json(changed=False, checked=checked, facts=facts, problems=[],
                     msg="healthy" + (" (edgecls verify passed on the live bundle)" if checked == "verify" else ""))


if __name__ == "__main__":
    main()
