#!/usr/bin/python
"""edgecls_deploy: unpack, check, verify and switch a packed bundle on the device - edgecls deploy's own steps."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: edgecls_deploy
short_description: Make a packed edgecls bundle live on a device, verified and atomic, as edgecls deploy does
description:
  - Runs C(edgecls deploy)'s own device-side step (the same shell program, from edgecls's
    C(deploy/remote.py)) on a tar that M(edgecls.fleet.edgecls_pack) made and M(ansible.builtin.copy) sent -
    under the device's lock, it unpacks into C(versions/.incoming-ID), checks every sha256 with
    C(sha256sum -c), reruns the bundle's golden photos with the device's C(edgecls verify), renames
    the version into place and switches C(current) by C(rename(2)), restarts the camera service named in
    C(DIR/service) if asked, and prunes old versions.
  - Any failure before the switch leaves the previous version live.
  - Before it unpacks, it checks that the folder's file system has room for the unpacked version; when it
    has not (or fills up during the unpack), it fails naming the folder and the space needed and free,
    and leaves nothing behind.
  - When the live bundle already has O(sha256), nothing is done and the result is C(ok), not C(changed).
  - The uploaded tar (O(src)) is removed afterwards.
options:
  dir:
    description: The device's bundle folder (C(edgecls_dir)); relative paths are under the login's home.
    type: str
    default: edgecls
  src:
    description: The packed tar on the device. Not needed when the bundle is live already.
    type: path
  version:
    description: The version id from M(edgecls.fleet.edgecls_pack).
    type: str
    required: true
  sha256:
    description: The bundle's sha256 from M(edgecls.fleet.edgecls_pack).
    type: str
    required: true
  keep:
    description: Versions kept on the device (the live one counts).
    type: int
    default: 5
  verify:
    description: Rerun the golden photos on the device before the switch.
    type: bool
    default: true
  restart:
    description: Restart the camera service named in C(DIR/service) after the switch.
    type: bool
    default: true
  edgecls_bin:
    description: The device's edgecls command (see M(edgecls.fleet.edgecls_facts)).
    type: str
    default: edgecls
author:
  - edgecls
"""

EXAMPLES = r"""
- name: Switch to the bundle
  edgecls.fleet.edgecls_deploy:
    dir: "{{ edgecls_dir }}"
    src: "{{ ansible_facts.edgecls.dir }}/.ansible-upload-{{ edgecls_packed.version }}.tar"
    version: "{{ edgecls_packed.version }}"
    sha256: "{{ edgecls_packed.sha256 }}"
"""

RETURN = r"""
version:
  description: The version live now.
  returned: always
  type: str
previous:
  description: The version live before.
  returned: always
  type: str
switched:
  description: Whether current was switched to O(version) (also on a failure after the switch, such as a service restart).
  returned: always
  type: bool
notes:
  description: What the device said that did not stop the deploy.
  returned: always
  type: list
  elements: str
"""

import glob
import os
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgecls.fleet.plugins.module_utils import edgecls_device as device
from ansible_collections.edgecls.fleet.plugins.module_utils import edgecls_remote as remote


def live(directory: str) -> str | None:
    cur = os.path.join(directory, "current")
    return os.path.basename(os.readlink(cur)) if os.path.islink(cur) else None


def remove(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def stale_uploads(directory: str, src: str | None) -> None:
    """Tars an earlier run left behind (a host that dropped, a run stopped with Ctrl-C)."""
    for path in glob.glob(os.path.join(directory, ".ansible-upload-*.tar")):
        if path != src:
            remove(path)


def switch(module: AnsibleModule, directory: str, before: str | None) -> dict:
    p = module.params
    exe = device.find_edgecls(directory, p["edgecls_bin"]) if p["verify"] else None
    if p["verify"] and not exe:
        return {"failed": True, "msg": f"no edgecls runtime on the device ({directory}/venv or {p['edgecls_bin']} on "
                                       "the PATH) to check the golden photos before the switch; set edgecls_bin, "
                                       "install it with `edgecls deploy --install-runtime`, or edgecls_verify=false"}
    if not p["src"] or not os.path.isfile(p["src"]):
        return {"failed": True, "msg": f"{p['src']}: the packed bundle is not on the device; copy it there first"}
    with open(p["src"], "rb") as stdin:
        need = remote.space_needed(stdin)
        stdin.seek(0)
        args = [directory, p["version"], str(p["keep"]), device.verify_command(exe) if exe else "",
                "yes" if p["restart"] else "no", str(need)]
        r = device.run_step(remote.UPLOAD, "edgecls-deploy", args, stdin=stdin)
    notes = [line.split("edgecls-remote: note: ", 1)[1] for line in r.stderr.splitlines()
             if "edgecls-remote: note: " in line]
    now = live(directory)
    if r.returncode == 0 and r.stdout.strip().endswith(f"live {p['version']}"):
        return {"changed": True, "switched": True, "version": now, "previous": before, "notes": notes,
                "msg": f"live {now} (was {before or 'nothing'})"}
    switched = now == p["version"]  # e.g. the service restart failed after the switch
    msg = device.failure(r.returncode, r.stderr)
    if switched:
        msg += f"; {now} is live (the switch happened before this)"
    elif "previous version stays live" not in msg:
        msg += f"; the previous version ({before or 'nothing'}) stays live"
    return {"failed": True, "changed": switched, "switched": switched, "version": now, "previous": before,
            "notes": notes, "msg": msg, "stderr": r.stderr[-4000:]}


def main() -> None:
    module = AnsibleModule(
        argument_spec={"dir": {"type": "str", "default": "edgecls"}, "src": {"type": "path"},
                       "version": {"type": "str", "required": True}, "sha256": {"type": "str", "required": True},
                       "keep": {"type": "int", "default": 5}, "verify": {"type": "bool", "default": True},
                       "restart": {"type": "bool", "default": True},
                       "edgecls_bin": {"type": "str", "default": "edgecls"}},
        supports_check_mode=True)
    p = module.params
    if p["keep"] < 1:
        module.fail_json(msg="keep must be at least 1 (the live version)")
    try:
        directory = device.absolute_dir(p["dir"])
    except ValueError as e:
        module.fail_json(msg=str(e))
    before = live(directory)
    if remote.live_sha256(directory) == p["sha256"]:
        remove(p["src"])
        module.exit_json(changed=False, switched=False, version=before, previous=before, notes=[],
                         msg=f"{before} holds this bundle and is live; nothing to do")
    if module.check_mode:
        module.exit_json(changed=True, switched=False, version=before, previous=before, notes=[],
                         msg=f"would switch {directory}/current from {before or 'nothing'} to {p['version']}")
    try:
        stale_uploads(directory, p["src"])
        out = switch(module, directory, before)
    except (OSError, subprocess.SubprocessError) as e:
        out = {"failed": True, "switched": live(directory) == p["version"], "version": live(directory),
               "previous": before, "notes": [], "msg": f"the deploy on the device stopped: {e}"}
    finally:
        remove(p["src"])
    if out.pop("failed", False):
        module.fail_json(**out)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
