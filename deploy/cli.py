"""``edgecls deploy``, registered through the ``edgecls.commands`` entry point."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy", help="send a bundle to Raspberry Pis over SSH: verified, atomic, reversible",
        description="Upload BUNDLE into a new version directory on each device, check every sha256 there, rerun "
                    "the bundle's golden photos with the device's edgecls (edgecls verify), then switch DIR/current "
                    "to it atomically. Any failure before the switch leaves the previous version live; a re-run "
                    "completes. Uses the system's ssh in batch mode: keys from your agent/~/.ssh or --identity, "
                    "host keys checked against known_hosts (unknown or changed keys are refused).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  edgecls deploy bundles/hands pi@raspberrypi.local\n"
               "  edgecls deploy bundles/hands --hosts pis.txt --parallel 4\n"
               "  edgecls deploy --rollback pi@raspberrypi.local\n  edgecls deploy --status pi@raspberrypi.local:edgecls")
    p.add_argument("args", nargs="*", metavar="BUNDLE USER@HOST[:DIR]",
                   help="the bundle and the target (DIR defaults to ~/edgecls); with --rollback/--status only the target")
    p.add_argument("--hosts", metavar="FILE", help="deploy to every target in FILE (one a line), in parallel")
    p.add_argument("--parallel", type=int, default=8, metavar="N", help="connections at once with --hosts (default 8)")
    p.add_argument("--port", type=int, default=None, help="SSH port")
    p.add_argument("--identity", metavar="KEY", help="SSH private key")
    p.add_argument("--known-hosts", metavar="FILE", help="known_hosts file (default: ssh's own)")
    p.add_argument("--keep", type=int, default=5, metavar="N", help="versions kept on the device (default 5)")
    p.add_argument("--install-runtime", action="store_true",
                   help="make DIR/venv on the device (with system site-packages, for picamera2) and install the "
                        "runtime from wheels built here and sent along: no internet needed on the device")
    p.add_argument("--service", nargs="?", const="", default=None, metavar="CAMERA_ARGS",
                   help="install or update a systemd unit (edgecls-camera.service) running `edgecls camera` on "
                        "DIR/current, with CAMERA_ARGS if given (e.g. \"--serve 8000 --on-change\"); restarted on "
                        "every deploy and rollback, checked to be running (needs root or passwordless sudo)")
    p.add_argument("--no-verify", action="store_true", help="do not rerun the golden photos on the device")
    p.add_argument("--remote-edgecls", metavar="CMD",
                   help="the edgecls command on the device, if not DIR/venv/bin/edgecls nor on its PATH")
    p.add_argument("--limit", type=float, metavar="KBPS", help="upload at most this many KiB/s")
    p.add_argument("--dry-run", action="store_true", help="check the bundle and the connection, change nothing")
    p.add_argument("--rollback", action="store_true", help="switch back to the version live before the current one")
    p.add_argument("--status", action="store_true", help="show the live version and the kept ones")
    p.add_argument("--json", action="store_true", help="one JSON object per target")
    p.set_defaults(func=cmd_deploy)


def cmd_deploy(a: argparse.Namespace) -> int:
    from . import run, ssh

    opts = ssh.Options(identity=a.identity, known_hosts=a.known_hosts)
    if a.rollback and a.status:
        raise ValueError("--rollback and --status do not go together")
    if a.keep < 1:
        raise ValueError("--keep must be at least 1 (the live version)")
    if a.rollback or a.status:
        if a.hosts:
            targets = [ssh.Target.parse(h, a.port) for h in run.read_hosts(a.hosts)]
        elif len(a.args) == 1:
            targets = [ssh.Target.parse(a.args[0], a.port)]
        else:
            raise ValueError("usage: edgecls deploy --rollback|--status USER@HOST[:DIR] (or --hosts FILE)")
        if a.status:
            for t in targets:
                s = run.status(t, opts)
                if a.json:
                    print(json.dumps(s))
                else:
                    print(f"{t}: live {s['current'] or '(nothing)'}; kept: {', '.join(s['versions']) or '-'}"
                          + (f"; incomplete uploads: {', '.join(s['incomplete'])}" if s["incomplete"] else ""))
            return 0
        outcomes = run.many(targets, lambda t: run.rollback(t, opts), a.parallel)
    else:
        if a.hosts:
            if len(a.args) != 1:
                raise ValueError("usage: edgecls deploy BUNDLE --hosts FILE")
            bundle, targets = a.args[0], [ssh.Target.parse(h, a.port) for h in run.read_hosts(a.hosts)]
        elif len(a.args) == 2:
            bundle, targets = a.args[0], [ssh.Target.parse(a.args[1], a.port)]
        else:
            raise ValueError("usage: edgecls deploy BUNDLE USER@HOST[:DIR] (or --hosts FILE)")
        packed = run.pack(Path(bundle))  # checksums verified once, here: a changed byte stops before any connection
        show = None if a.json else run.progress_printer()
        outcomes = run.many(targets, lambda t: run.deploy(packed, t, opts, keep=a.keep, verify=not a.no_verify,
                                                          remote_edgecls=a.remote_edgecls, limit_kbps=a.limit,
                                                          dry_run=a.dry_run, install=a.install_runtime,
                                                          service=None if a.service is None else shlex.split(a.service),
                                                          progress=show), a.parallel)
    if a.json:
        for o in outcomes:
            print(json.dumps(o.to_dict()))
    elif len(outcomes) == 1:
        o = outcomes[0]
        for w in o.warnings:
            print(f"edgecls: warning: {w}", file=sys.stderr)
        if o.runtime:
            print(f"{o.target}: {o.runtime}", file=sys.stderr)
        if o.ok:
            print(f"{o.target}: {o.message}")
        else:
            print(f"edgecls: error: {o.message}", file=sys.stderr)
    else:
        print(run.format_table(outcomes))
    failed = [o for o in outcomes if not o.ok]
    if failed and len(outcomes) > 1 and not a.json:
        print(f"edgecls: {len(failed)} of {len(outcomes)} targets failed", file=sys.stderr)
    return 1 if failed else 0
