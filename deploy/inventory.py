"""Which devices a fleet command talks to: ``--hosts FILE`` (with ``--group NAME``).

Three formats, told apart by content:

* a plain hosts file: one ``[USER@]HOST[:DIR]`` or ``ssh://[USER@]HOST[:PORT][/DIR]`` a line,
  ``#`` comments (edgecls's own format);
* an Ansible INI inventory: ``[group]``, ``[group:vars]`` and ``[group:children]`` sections, a host a
  line followed by ``key=value`` variables, ranges such as ``cam[01:12].lan``;
* an Ansible YAML inventory (``all:`` with ``hosts``, ``vars`` and ``children``), read with PyYAML.

Of Ansible's variables edgecls uses ``ansible_host``, ``ansible_user``, ``ansible_port``,
``ansible_ssh_private_key_file`` (and the older ``ansible_ssh_host/_user/_port``) and its own
``edgecls_dir`` (the directory on the device, default ``edgecls``); the others are ignored. As in
Ansible, a host's own variables win over its groups', a child group's over its parent's, and
``all`` comes last. Every error names the file and the line.
"""

from __future__ import annotations

import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from edge_runtime.errors import EdgeclsError

from . import ssh

DEFAULT_DIR = "edgecls"
HOST_VARS = {"ansible_host": "host", "ansible_ssh_host": "host", "ansible_user": "user", "ansible_ssh_user": "user",
             "ansible_port": "port", "ansible_ssh_port": "port", "ansible_ssh_private_key_file": "identity",
             "edgecls_dir": "dir"}


class InventoryError(EdgeclsError):
    """An inventory that cannot be read; the message starts with FILE:LINE."""


@dataclass(frozen=True)
class Host:
    """One device: its inventory name, where to reach it, and the key to use (None: the run's)."""

    name: str
    target: ssh.Target
    identity: str | None = None
    groups: tuple[str, ...] = ()

    def options(self, base: ssh.Options) -> ssh.Options:
        """The run's SSH options with this host's own key, if the inventory names one."""
        if self.identity is None:
            return base
        return ssh.Options(identity=self.identity, known_hosts=base.known_hosts, connect_timeout=base.connect_timeout)


@dataclass
class _Group:
    hosts: dict[str, int] = field(default_factory=dict)  # host -> line of its first mention here
    vars: dict[str, tuple[Any, int]] = field(default_factory=dict)
    children: list[str] = field(default_factory=list)
    line: int = 0


@dataclass
class _Inventory:
    path: str
    groups: dict[str, _Group] = field(default_factory=lambda: {"all": _Group(), "ungrouped": _Group()})
    host_vars: dict[str, dict[str, tuple[Any, int]]] = field(default_factory=dict)
    order: dict[str, int] = field(default_factory=dict)  # host -> line where it first appears

    def group(self, name: str, line: int) -> _Group:
        if name not in self.groups:
            self.groups[name] = _Group(line=line)
        return self.groups[name]

    def add_host(self, group: str, name: str, line: int, variables: dict[str, tuple[Any, int]]) -> None:
        self.group(group, line).hosts.setdefault(name, line)
        self.order.setdefault(name, line)
        self.host_vars.setdefault(name, {}).update(variables)


# --- reading ----------------------------------------------------------------------------------


def load(path: str | os.PathLike[str], group: str | None = None, port: int | None = None) -> list[Host]:
    """The hosts of the inventory at ``path`` (all of them, or those in ``group``: a name or a
    comma-separated list), in the order the file first names them. ``port``: --port, for hosts
    whose inventory gives none."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise InventoryError(f"{path}: cannot read the hosts file ({e.strerror})") from None
    except UnicodeDecodeError:
        raise InventoryError(f"{path}: not a text file; give a hosts file or an Ansible inventory") from None
    kind = sniff(p.name, text)
    if kind == "plain":
        if group:
            raise InventoryError(f"{path}: --group needs an Ansible inventory ([group] sections or YAML); "
                                 "this is a plain hosts file")
        return _plain(str(path), text, port)
    inv = _read_yaml(str(path), text) if kind == "yaml" else _read_ini(str(path), text)
    return _resolve(inv, group, port)


def sniff(name: str, text: str) -> str:
    """``yaml``, ``ini`` or ``plain``."""
    if name.endswith((".yml", ".yaml")):
        return "yaml"
    lines = [l.split("#", 1)[0].rstrip() for l in text.splitlines()]
    lines = [l for l in lines if l.strip() and not l.lstrip().startswith(";")]
    if any(re.fullmatch(r"\s*\[[^\]]+\]\s*", l) for l in lines):
        return "ini"
    if lines and (lines[0].strip() == "---" or re.fullmatch(r"[A-Za-z_][\w-]*:\s*", lines[0])):
        return "yaml"
    if any("=" in tok for l in lines for tok in l.split()[1:]):
        return "ini"
    return "plain"


def _plain(path: str, text: str, port: int | None) -> list[Host]:
    hosts = []
    for n, line in enumerate(text.splitlines(), 1):
        spec = line.split("#", 1)[0].strip()
        if not spec:
            continue
        try:
            t = ssh.Target.parse(spec, port)
        except ValueError as e:
            raise InventoryError(f"{path}:{n}: {e}") from None
        hosts.append(Host(spec, t))
    if not hosts:
        raise InventoryError(f"{path}: no targets in it; write one [USER@]HOST[:DIR] a line, or an Ansible inventory")
    return hosts


def expand(pattern: str) -> list[str]:
    """Ansible's host ranges: ``cam[01:03]`` -> cam01, cam02, cam03; ``[a:c]``; ``[0:10:5]`` (stride)."""
    m = re.search(r"\[([0-9a-zA-Z]+):([0-9a-zA-Z]+)(?::(\d+))?\]", pattern)
    if not m:
        return [pattern]
    head, tail = pattern[:m.start()], pattern[m.end():]
    lo, hi, stride = m.group(1), m.group(2), int(m.group(3) or 1)
    if stride < 1:
        raise ValueError(f"{pattern}: a range's stride must be at least 1")
    if lo.isdigit() and hi.isdigit():
        width = len(lo) if lo.startswith("0") and len(lo) > 1 else 0
        if int(lo) > int(hi):
            raise ValueError(f"{pattern}: the range [{lo}:{hi}] runs backwards")
        items = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1, stride)]
    elif len(lo) == 1 and len(hi) == 1 and lo in string.ascii_letters and hi in string.ascii_letters and lo <= hi:
        items = [chr(c) for c in range(ord(lo), ord(hi) + 1, stride)]
    else:
        raise ValueError(f"{pattern}: give a range as [01:20] or [a:f]")
    return [h for i in items for h in expand(head + i + tail)]


def _value(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _read_ini(path: str, text: str) -> _Inventory:
    inv = _Inventory(path)
    section, kind = "ungrouped", "hosts"
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        m = re.fullmatch(r"\[([^\]:\s]+)(?::(vars|children))?\]\s*(?:[#;].*)?", line)
        if line.startswith("["):
            if not m:
                raise InventoryError(f"{path}:{n}: {line!r} is not a section header; write [group], [group:vars] "
                                     "or [group:children]")
            section, kind = m.group(1), m.group(2) or "hosts"
            inv.group(section, n)
            continue
        if kind == "children":
            inv.group(section, n).children.append(line.split()[0])
            inv.group(line.split()[0], n)
        elif kind == "vars":
            key, eq, value = line.partition("=")
            if not eq or not key.strip():
                raise InventoryError(f"{path}:{n}: {line!r}: a [{section}:vars] line is key=value")
            inv.group(section, n).vars[key.strip()] = (_value(value.strip()), n)
        else:
            _ini_host(inv, section, line, n)
    return inv


def _ini_host(inv: _Inventory, section: str, line: str, n: int) -> None:
    import shlex

    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as e:
        raise InventoryError(f"{inv.path}:{n}: {e} in {line!r}") from None
    name, variables = tokens[0], {}
    for tok in tokens[1:]:
        key, eq, value = tok.partition("=")
        if not eq or not key:
            raise InventoryError(f"{inv.path}:{n}: {tok!r} after the host name is not key=value "
                                 f"(e.g. ansible_host=192.168.1.20)")
        variables[key] = (value, n)
    m = re.fullmatch(r"(.+?):(\d+)", name)  # Ansible's host:port
    if m and "@" not in name:
        name = m.group(1)
        variables.setdefault("ansible_port", (m.group(2), n))
    try:
        names = expand(name)
    except ValueError as e:
        raise InventoryError(f"{inv.path}:{n}: {e}") from None
    for h in names:
        inv.add_host(section, h, n, dict(variables))


def _read_yaml(path: str, text: str) -> _Inventory:
    try:
        import yaml
    except ImportError:
        raise InventoryError(f"{path}: reading a YAML inventory needs PyYAML: pip install pyyaml "
                             "(it comes with edgecls[train]), or write the inventory in INI form") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else path
        raise InventoryError(f"{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    inv = _Inventory(path)
    if root is None:
        return inv
    for key, value in _mapping(inv, root, "the top level of a YAML inventory"):
        _yaml_group(inv, key.value, value, key.start_mark.line + 1)
    return inv


def _mapping(inv: _Inventory, node: Any, what: str) -> Iterator[tuple[Any, Any]]:
    import yaml

    if node is None or (isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null")):
        return iter(())
    if not isinstance(node, yaml.MappingNode):
        raise InventoryError(f"{inv.path}:{node.start_mark.line + 1}: {what} must be a mapping (name: ...)")
    return iter(node.value)


def _scalars(inv: _Inventory, node: Any, what: str) -> dict[str, tuple[Any, int]]:
    import yaml

    out = {}
    for k, v in _mapping(inv, node, what):
        if isinstance(v, yaml.ScalarNode):
            out[k.value] = (v.value, v.start_mark.line + 1)
    return out


def _yaml_group(inv: _Inventory, name: str, node: Any, line: int) -> None:
    g = inv.group(name, line)
    for key, value in _mapping(inv, node, f"group {name!r}"):
        n = key.start_mark.line + 1
        if key.value == "hosts":
            for hk, hv in _mapping(inv, value, f"the hosts of group {name!r}"):
                try:
                    names = expand(hk.value)
                except ValueError as e:
                    raise InventoryError(f"{inv.path}:{hk.start_mark.line + 1}: {e}") from None
                for h in names:
                    inv.add_host(name, h, hk.start_mark.line + 1, _scalars(inv, hv, f"host {h!r}"))
        elif key.value == "vars":
            g.vars.update(_scalars(inv, value, f"the vars of group {name!r}"))
        elif key.value == "children":
            for ck, cv in _mapping(inv, value, f"the children of group {name!r}"):
                g.children.append(ck.value)
                _yaml_group(inv, ck.value, cv, ck.start_mark.line + 1)
        else:
            raise InventoryError(f"{inv.path}:{n}: group {name!r} has {key.value!r}; a group holds hosts, vars "
                                 "and children")


# --- resolving ---------------------------------------------------------------------------------


def _depths(inv: _Inventory) -> dict[str, int]:
    """How deep each group sits under ``all`` (for variable precedence); refuses cycles."""
    parents: dict[str, list[str]] = {}
    for name, g in inv.groups.items():
        for c in g.children:
            parents.setdefault(c, []).append(name)
    depth: dict[str, int] = {}

    def walk(name: str, seen: tuple[str, ...]) -> int:
        if name in seen:
            raise InventoryError(f"{inv.path}:{inv.groups[name].line}: group {name!r} is its own ancestor "
                                 f"({' -> '.join(seen + (name,))})")
        if name not in depth:
            ps = [p for p in parents.get(name, []) if p != "all"]
            depth[name] = 0 if name == "all" else 1 + max((walk(p, seen + (name,)) for p in ps), default=0)
        return depth[name]

    for name in inv.groups:
        walk(name, ())
    return depth


def _members(inv: _Inventory, name: str) -> list[str]:
    """The hosts of a group and of its children, recursively."""
    g = inv.groups[name]
    out = list(g.hosts)
    for c in g.children:
        out += _members(inv, c)
    return out


def _resolve(inv: _Inventory, group: str | None, port: int | None) -> list[Host]:
    depth = _depths(inv)
    memberships: dict[str, set[str]] = {h: {"all"} for h in inv.order}
    for name in inv.groups:
        for h in _members(inv, name):
            memberships[h].add(name)
    wanted = list(inv.order) if group is None else _selected(inv, group)
    if not wanted:
        raise InventoryError(f"{inv.path}: no hosts in it" + (f" in group {group!r}" if group else ""))
    hosts = []
    for h in sorted(wanted, key=lambda h: inv.order[h]):
        groups = sorted(memberships[h] - {"all", "ungrouped"}, key=lambda g: (depth[g], g))
        merged: dict[str, tuple[Any, int]] = {}
        for g in ["all"] + groups:
            merged.update(inv.groups[g].vars)
        merged.update(inv.host_vars.get(h, {}))
        hosts.append(_host(inv.path, h, merged, tuple(groups), port, inv.order[h]))
    return hosts


def _selected(inv: _Inventory, group: str) -> list[str]:
    out: list[str] = []
    for name in [g.strip() for g in group.split(",") if g.strip()]:
        if name not in inv.groups:
            known = sorted(g for g in inv.groups if g not in ("ungrouped",))
            raise InventoryError(f"{inv.path}: no group {name!r} in it; its groups: {', '.join(known)}")
        out += [h for h in (list(inv.order) if name == "all" else _members(inv, name)) if h not in out]
    return out


def _host(path: str, name: str, v: dict[str, tuple[Any, int]], groups: tuple[str, ...], port: int | None,
          line: int) -> Host:
    got = {HOST_VARS[k]: (str(val), n) for k, (val, n) in v.items() if k in HOST_VARS}
    p = port
    if "port" in got:
        text, n = got["port"]
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise InventoryError(f"{path}:{n}: {name}: ansible_port={text!r} is not a port number")
        p = int(text)
    if "host" not in got and ("@" in name or name.startswith("ssh://")):  # an edgecls target as the host name
        try:
            t = ssh.Target.parse(name, p)
        except ValueError as e:
            raise InventoryError(f"{path}:{line}: {e}") from None
        got.setdefault("user", (t.user, line))
        got.setdefault("dir", (t.dir, line))
        got["host"] = (t.host, line)
        p = p if "port" in got else t.port
    address = got.get("host", (name, line))[0]
    if not re.fullmatch(r"[0-9A-Za-z._:%\[\]-]+", address):
        raise InventoryError(f"{path}:{got.get('host', (name, line))[1]}: {address!r} is not a host name or "
                             "address; set ansible_host=ADDRESS for it")
    identity = got.get("identity", (None, 0))[0]
    target = ssh.Target(got.get("user", (None, 0))[0], address.strip("[]"), got.get("dir", (DEFAULT_DIR, 0))[0], p)
    return Host(name, target, os.path.expanduser(identity) if identity else None, groups)
