#!/usr/bin/python
"""edgecls_rollback: switch a device back to the version live before - edgecls deploy --rollback's own step."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: edgecls_rollback
short_description: Switch a device back to the version that was live before, as edgecls deploy --rollback does
description:
  - Runs C(edgecls deploy --rollback)'s device-side step (edgecls's C(deploy/remote.py)) - under the device's
    lock, it points C(current) at the newest earlier version still kept, by C(rename(2)), and restarts
    the camera service if one is installed.
  - With O(only_if_live), it acts only while that version is live, so a task repeated (or a play re-run)
    never rolls back twice; otherwise it reports C(ok).
options:
  dir:
    description: The device's bundle folder (C(edgecls_dir)).
    type: str
    default: edgecls
  only_if_live:
    description: Roll back only while this version id is live.
    type: str
author:
  - edgecls
"""

EXAMPLES = r"""
- name: Back to what ran before
  edgecls.fleet.edgecls_rollback:
    dir: "{{ edgecls_dir }}"
    only_if_live: "{{ edgecls_packed.version }}"
"""

RETURN = r"""
version:
  description: The version live now.
  returned: always
  type: str
previous:
  description: The version live before the rollback.
  returned: always
  type: str
"""

import os
import subprocess

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgecls.fleet.plugins.module_utils import edgecls_device as device
from ansible_collections.edgecls.fleet.plugins.module_utils import edgecls_remote as remote


def live(directory: str) -> str | None:
    cur = os.path.join(directory, "current")
    return os.path.basename(os.readlink(cur)) if os.path.islink(cur) else None


def main() -> None:
    module = AnsibleModule(argument_spec={"dir": {"type": "str", "default": "edgecls"},
                                          "only_if_live": {"type": "str"}},
                           supports_check_mode=True)
    try:
        directory = device.absolute_dir(module.params["dir"])
    except ValueError as e:
        module.fail_json(msg=str(e))
    before = live(directory)
    want = module.params["only_if_live"]
    if want and before != want:
        module.exit_json(changed=False, version=before, previous=before,
                         msg=f"{want} is not live ({before or 'nothing'} is); nothing to roll back")
    if module.check_mode:
        module.exit_json(changed=True, version=before, previous=before, msg=f"would roll back from {before}")
    try:
        r = device.run_step(remote.ROLLBACK, "edgecls-rollback", [directory], timeout=300)
    except (OSError, subprocess.SubprocessError) as e:
        module.fail_json(msg=f"the rollback stopped: {e}; {live(directory) or 'nothing'} is live",
                         version=live(directory), previous=before)
    now = live(directory)
    if r.returncode != 0:
        module.fail_json(msg=f"rollback failed: {device.failure(r.returncode, r.stderr)}; {now or 'nothing'} is live",
                         changed=now != before, version=now, previous=before)
    module.exit_json(changed=True, version=now, previous=before, msg=r.stdout.strip())


if __name__ == "__main__":
    main()
