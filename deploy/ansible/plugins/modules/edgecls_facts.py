#!/usr/bin/python
"""edgecls_facts: what a device runs - live bundle version, sha256, runtime, backend, board."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: edgecls_facts
short_description: Report the live edgecls bundle, runtime, backend and board of a device as facts
description:
  - Reads the device's bundle folder as C(edgecls deploy) lays it out (C(current), C(versions/), C(service))
    with the same probe C(edgecls deploy --status) runs, and sets the fact C(edgecls).
  - Changes nothing; safe in check mode and with C(ansible -m edgecls.fleet.edgecls_facts -a dir=edgecls).
options:
  dir:
    description: The device's bundle folder (C(edgecls_dir) of the inventory); relative paths are under the login's home.
    type: str
    default: edgecls
  edgecls_bin:
    description:
      - The device's edgecls command. A bare name means C(DIR/venv/bin/edgecls) when it exists
        (what C(edgecls deploy --install-runtime) makes), else that name on the PATH; a path or a
        command line is used as written.
    type: str
    default: edgecls
  runtime:
    description: Ask the device's edgecls for its version (C(edgecls --version), a second or two on a Pi).
    type: bool
    default: true
author:
  - edgecls
"""

EXAMPLES = r"""
- name: What runs where
  edgecls.fleet.edgecls_facts:
    dir: "{{ edgecls_dir | default('edgecls') }}"

- name: Show it
  ansible.builtin.debug:
    msg: "{{ inventory_hostname }}: {{ ansible_facts.edgecls.version }} ({{ ansible_facts.edgecls.backend }} on {{ ansible_facts.edgecls.board }})"
"""

RETURN = r"""
ansible_facts:
  description: C(edgecls), a dictionary.
  returned: always
  type: complex
  contains:
    edgecls:
      description: >-
        dir (absolute), version (the live version id, null when nothing is live), name, sha256 (the
        live bundle's, as edgecls_pack computes it), since (when it went live, epoch seconds),
        versions (kept), runtime (C(edgecls --version), null without a runtime), edgecls (the command
        found), backend (the camera's, else what C(--backend auto) would take), board, service,
        state, fps, probe (the raw probe).
      type: dict
      returned: always
"""

import glob
import os
import platform
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgecls.fleet.plugins.module_utils import edgecls_device as device
from ansible_collections.edgecls.fleet.plugins.module_utils import edgecls_remote as remote

CORAL_USB = ("1a6e", "18d1")  # the Coral USB Accelerator before and after its firmware loads


def board() -> str:
    """The device tree's model (a Pi), else the DMI product name, else the CPU architecture."""
    for path in ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model",
                 "/sys/devices/virtual/dmi/id/product_name"):
        try:
            with open(path, "rb") as f:
                text = f.read().replace(b"\0", b"").decode(errors="replace").strip()
        except OSError:
            continue
        if text:
            return text
    return platform.machine()


def edgetpu_present() -> bool:
    if glob.glob("/dev/apex_*"):
        return True
    for path in glob.glob("/sys/bus/usb/devices/*/idVendor"):
        try:
            with open(path) as f:
                if f.read().strip() in CORAL_USB:
                    return True
        except OSError:
            pass
    return False


def backend(directory: str, probe: dict) -> str | None:
    """The running camera's backend (its status.json), else the one ``--backend auto`` takes for the
    live bundle here: the Edge TPU when the bundle has its model and one is plugged in, else the CPU."""
    info = ((probe.get("status") or {}).get("info") or {})
    if info.get("backend"):
        return info["backend"]
    if not probe.get("current"):
        return None
    if os.path.exists(os.path.join(directory, "current", "model_edgetpu.tflite")) and edgetpu_present():
        return "edgetpu"
    return "cpu"


def runtime(exe: str | None) -> str | None:
    if not exe:
        return None
    try:
        p = subprocess.run(["sh", "-c", exe + " --version" if " " in exe else '"$0" --version', exe],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip().splitlines()[-1] if p.returncode == 0 and p.stdout.strip() else None


def facts(directory: str, asked: str, with_runtime: bool = True) -> dict:
    p = device.probe(directory)
    exe = device.find_edgecls(directory, asked)
    return {"dir": directory, "version": p["current"], "name": p["name"], "sha256": remote.live_sha256(directory),
            "since": p["since"], "versions": p["versions"], "edgecls": exe,
            "runtime": runtime(exe) if with_runtime else None,
            "backend": backend(directory, p), "board": board(), "service": p["service"], "state": p["state"],
            "fps": (p.get("status") or {}).get("fps"), "probe": p}


def main() -> None:
    module = AnsibleModule(argument_spec={"dir": {"type": "str", "default": "edgecls"},
                                          "edgecls_bin": {"type": "str", "default": "edgecls"},
                                          "runtime": {"type": "bool", "default": True}},
                           supports_check_mode=True)
    try:
        directory = device.absolute_dir(module.params["dir"])
        out = facts(directory, module.params["edgecls_bin"], module.params["runtime"])
    except (ValueError, RuntimeError, OSError, subprocess.SubprocessError) as e:
        module.fail_json(msg=str(e))
    module.exit_json(changed=False, ansible_facts={"edgecls": out})


if __name__ == "__main__":
    main()
