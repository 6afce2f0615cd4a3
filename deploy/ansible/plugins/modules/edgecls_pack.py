#!/usr/bin/python
"""edgecls_pack: on the controller, check a bundle and pack it once for every device of a rollout."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: edgecls_pack
short_description: Check an edgecls bundle and pack it for the devices (run on the controller)
description:
  - Reads a bundle folder or C(.tar.gz) on the controller, checks the size and sha256 of every file
    its C(edgecls.json) lists, and writes the tar stream C(edgecls deploy) sends (the files plus a
    C(SHA256SUMS) manifest the device checks with C(sha256sum -c)).
  - Returns the version id every device of the rollout gets and the bundle's sha256, which
    M(edgecls.fleet.edgecls_deploy) compares with the live bundle to change nothing when it is live already.
  - Writing the pack file is scratch work on the controller, so the module reports C(ok), never C(changed).
options:
  bundle:
    description: The bundle folder or C(.tar.gz) on the controller.
    type: path
    required: true
  dest:
    description: Folder for the packed tar (one file per bundle sha256, reused).
    type: path
    default: ~/.cache/edgecls/ansible
author:
  - edgecls
"""

EXAMPLES = r"""
- name: Pack the bundle once
  edgecls.fleet.edgecls_pack:
    bundle: bundles/hands
  delegate_to: localhost
  run_once: true
  register: edgecls_packed
"""

RETURN = r"""
path:
  description: The packed tar on the controller.
  returned: success
  type: str
version:
  description: The version id the devices get (UTC time, bundle name, manifest hash).
  returned: success
  type: str
sha256:
  description: The bundle's sha256 (its files' manifest and edgecls.json).
  returned: success
  type: str
name:
  description: The bundle's name from edgecls.json.
  returned: success
  type: str
size:
  description: Bytes to send to each device.
  returned: success
  type: int
"""

import json
import os
import tarfile
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.edgecls.fleet.plugins.module_utils import edgecls_remote as remote

META = "edgecls.json"


def unpack(archive: str, into: str) -> str:
    """The files of a bundle archive that its edgecls.json lists (regular files only), under ``into``."""
    with tarfile.open(archive, "r:gz") as tar:
        metas = [m for m in tar.getmembers() if os.path.basename(m.name) == META and m.isreg()]
        if len(metas) != 1:
            raise ValueError(f"{archive}: the archive holds {len(metas)} {META} files; a bundle archive holds one")
        prefix = os.path.dirname(metas[0].name)
        meta = json.loads(tar.extractfile(metas[0]).read().decode("utf-8"))
        wanted = {os.path.join(prefix, n) if prefix else n: n for n in list(meta.get("files") or {}) + [META]}
        for m in tar.getmembers():
            name = wanted.get(m.name)
            if name is None or not m.isreg() or os.path.isabs(name) or ".." in name.split("/"):
                continue
            path = os.path.join(into, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with tar.extractfile(m) as src, open(path, "wb") as dst:
                dst.write(src.read())
    return into


def full_check(root: str) -> None:
    """edgecls's own bundle check (format version, the whole of edgecls.json) where this Python has
    edgecls installed; the sha256 of every file is checked either way."""
    try:
        from edge_runtime.bundle.format import load_bundle
    except ImportError:
        return
    load_bundle(root)


def pack(bundle: str, dest: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="edgecls-pack-") as tmp:
        root = unpack(bundle, tmp) if os.path.isfile(bundle) else bundle
        meta_path = os.path.join(root, META)
        try:
            with open(meta_path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise ValueError(f"{meta_path}: {e.strerror}; give a bundle folder or .tar.gz made by edgecls convert")
        meta = json.loads(raw.decode("utf-8"))
        remote.check_files(root, meta)
        full_check(root)
        data, version = remote.bundle_tar(root, meta)
    sha = remote.bundle_sha256(raw)
    os.makedirs(dest, exist_ok=True)
    path = os.path.join(dest, f"{sha[:16]}.tar")
    fd, tmp_path = tempfile.mkstemp(dir=dest, prefix=".pack-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp_path, path)
    return {"path": path, "version": version, "sha256": sha, "name": meta.get("name") or "", "size": len(data)}


def main() -> None:
    module = AnsibleModule(argument_spec={"bundle": {"type": "path", "required": True},
                                          "dest": {"type": "path", "default": "~/.cache/edgecls/ansible"}},
                           supports_check_mode=True)
    bundle = module.params["bundle"]
    if not os.path.exists(bundle):
        module.fail_json(msg=f"{bundle}: bundle not found; give -e bundle=PATH (a bundle folder or .tar.gz)")
    try:
        out = pack(bundle, os.path.expanduser(module.params["dest"]))
    except (ValueError, KeyError, OSError, tarfile.TarError) as e:
        module.fail_json(msg=f"{bundle}: {e}")
    except Exception as e:  # noqa: BLE001 - edgecls's own BundleError, when it is installed here
        module.fail_json(msg=str(e))
    module.exit_json(changed=False, **out)


if __name__ == "__main__":
    main()
