"""``edgecls deploy``, registered through the ``edgecls.commands`` entry point."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from edge_runtime.cli.args import nonneg_float, nonneg_int, positive_float, positive_int


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
    p.add_argument("--hosts", metavar="FILE", help="deploy to every target in FILE, in parallel: one [USER@]HOST[:DIR] "
                   "a line, or an Ansible inventory (INI or YAML; ansible_host, ansible_user, ansible_port, "
                   "ansible_ssh_private_key_file and edgecls_dir are used)")
    p.add_argument("--group", metavar="NAME[,NAME]", help="with an Ansible inventory: only the hosts of these groups")
    p.add_argument("--parallel", type=positive_int, default=8, metavar="N", help="connections at once with --hosts (default 8)")
    p.add_argument("--port", type=positive_int, default=None, help="SSH port")
    p.add_argument("--identity", metavar="KEY", help="SSH private key")
    p.add_argument("--known-hosts", metavar="FILE", help="known_hosts file (default: ssh's own)")
    p.add_argument("--keep", type=nonneg_int, default=5, metavar="N", help="versions kept on the device (default 5; 0: keep all)")
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
    p.add_argument("--limit", type=positive_float, metavar="KBPS", help="upload at most this many KiB/s")
    p.add_argument("--dry-run", action="store_true", help="check the bundle and the connection, change nothing")
    p.add_argument("--rollback", action="store_true", help="switch back to the version live before the current one")
    p.add_argument("--status", action="store_true", help="show the live version and the kept ones")
    p.add_argument("--json", action="store_true", help="one JSON object per target (a staged rollout: one report)")
    r = p.add_argument_group("staged rollout (with --hosts; on when --canary or --wave-size is given)")
    r.add_argument("--canary", type=positive_int, default=None, metavar="N",
                   help="deploy to the first N hosts and check their health before any other")
    r.add_argument("--wave-size", type=positive_int, default=None, metavar="N",
                   help="then the other hosts N at a time (default: all at once)")
    r.add_argument("--soak", type=nonneg_float, default=10.0, metavar="SECONDS",
                   help="where the camera service runs, its frames must advance without errors for this long "
                        "(default 10)")
    r.add_argument("--max-latency-ratio", type=nonneg_float, default=1.5, metavar="R",
                   help="and its latency stay within R times what it was before (default 1.5; 0: do not check)")
    r.add_argument("--max-drift", type=nonneg_float, default=None, metavar="D",
                   help="and its drift from the bundle's reference photos (edgecls camera's drift score, shown in "
                        "status.json) at most D at the end of the soak, e.g. 0.25 (default: not checked)")
    r.add_argument("--max-failures", type=nonneg_int, default=0, metavar="N",
                   help="when more than N hosts fail, stop and roll back every host this run switched (default 0)")
    r.add_argument("--report", metavar="FILE.md",
                   help="where to write the Markdown report (default edgecls-rollouts/VERSION.md)")
    p.set_defaults(func=cmd_deploy)
    from .fleet import extend_bench
    from .pull import register as register_pull

    extend_bench(sub)
    register_pull(sub)


def cmd_deploy(a: argparse.Namespace) -> int:
    from . import ssh

    opts = ssh.Options(identity=a.identity, known_hosts=a.known_hosts)
    if a.rollback and a.status:
        raise ValueError("--rollback and --status do not go together")
    if a.keep < 1:
        raise ValueError("--keep must be at least 1 (the live version)")
    if a.group and not a.hosts:
        raise ValueError("--group selects hosts of an inventory: give --hosts INV too")
    if a.status:
        return _status(a, opts)
    if a.rollback:
        return _finish(a, _rollback(a, opts))
    if a.canary is not None or a.wave_size is not None:
        return _rollout(a, opts)
    return _finish(a, _deploy(a, opts))


def _hosts(a: argparse.Namespace, usage: str, n_args: int) -> list:
    """The inventory's hosts (--hosts) or the one target on the command line."""
    from . import inventory, ssh

    if a.hosts:
        if len(a.args) != n_args - 1:
            raise ValueError(usage)
        return inventory.load(a.hosts, a.group, a.port)
    if len(a.args) != n_args:
        raise ValueError(usage)
    t = ssh.Target.parse(a.args[-1], a.port)
    return [inventory.Host(a.args[-1], t)]


def _status(a: argparse.Namespace, opts) -> int:
    from . import fleet, run

    hosts = _hosts(a, "usage: edgecls deploy --status USER@HOST[:DIR] (or --hosts INV)", 1)
    if a.hosts:
        rows = fleet.status_rows(hosts, opts, a.parallel)
        if a.json:
            for r in rows:
                print(json.dumps(r))
        else:
            print(fleet.status_table(rows))
        return 1 if any(r["error"] for r in rows) else 0
    t = hosts[0].target
    s = run.status(t, opts)
    if a.json:
        print(json.dumps(s))
    else:
        print(f"{t}: live {s['current'] or '(nothing)'}; kept: {', '.join(s['versions']) or '-'}"
              + (f"; incomplete uploads: {', '.join(s['incomplete'])}" if s["incomplete"] else ""))
    return 0


def _rollback(a: argparse.Namespace, opts) -> list:
    from . import run

    hosts = _hosts(a, "usage: edgecls deploy --rollback USER@HOST[:DIR] (or --hosts INV)", 1)
    return run.many(hosts, lambda h: run.rollback(h.target, h.options(opts)), a.parallel)


def _deployer(a: argparse.Namespace, packed: tuple, show):
    """deploy(host, options) with this command line's settings."""
    from . import run

    service = None if a.service is None else shlex.split(a.service)
    return lambda h, o: run.deploy(packed, h.target, o, keep=a.keep, verify=not a.no_verify,
                                   remote_edgecls=a.remote_edgecls, limit_kbps=a.limit, dry_run=a.dry_run,
                                   install=a.install_runtime, service=service, progress=show)


def _deploy(a: argparse.Namespace, opts) -> list:
    from . import run

    hosts = _hosts(a, "usage: edgecls deploy BUNDLE USER@HOST[:DIR] (or BUNDLE --hosts INV)", 2)
    packed = run.pack(Path(a.args[0]))  # checksums verified once, here: a changed byte stops before any connection
    job = _deployer(a, packed, None if a.json else run.progress_printer())
    return run.many(hosts, lambda h: job(h, h.options(opts)), a.parallel)


def _rollout(a: argparse.Namespace, opts) -> int:
    from . import rollout, run

    if not a.hosts:
        raise ValueError("--canary and --wave-size stage a rollout over an inventory: give --hosts INV")
    if a.dry_run:
        raise ValueError("--dry-run does not go with a staged rollout; run it without --canary first")
    hosts = _hosts(a, "usage: edgecls deploy BUNDLE --hosts INV --canary N [--wave-size N]", 2)
    policy = rollout.Policy(canary=a.canary or 0, wave_size=a.wave_size or 0, soak=a.soak,
                            max_latency_ratio=a.max_latency_ratio or None, max_failures=a.max_failures,
                            max_drift=a.max_drift,
                            parallel=a.parallel)
    packed = run.pack(Path(a.args[0]))
    rep = rollout.rollout(hosts, a.args[0], packed[1], opts, policy, _deployer(a, packed, None),
                          verify=not a.no_verify, log=lambda m: print(f"edgecls: {m}", file=sys.stderr, flush=True))
    path = Path(a.report or Path("edgecls-rollouts") / f"{packed[1]}.md")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rep.markdown())
    print(json.dumps(rep.to_dict()) if a.json else rep.table())
    print(f"edgecls: report: {path}", file=sys.stderr)
    if a.no_verify:
        print(f"edgecls: note: health: {rollout.HEALTH_UNVERIFIED}", file=sys.stderr)
    if rep.stopped:
        print(f"edgecls: error: the rollout stopped: {rep.stopped}; {_rolled_back_words(rep)}", file=sys.stderr)
    elif rep.rollback_failed:
        print(f"edgecls: error: {_rolled_back_words(rep)}", file=sys.stderr)
    return 0 if rep.ok else 1


def _rolled_back_words(rep) -> str:  # type: ignore[no-untyped-def]
    """What became of the hosts this rollout switched, as it is."""
    stuck = rep.rollback_failed
    if not stuck:
        return "every host it switched was rolled back"
    return (f"ROLLBACK FAILED on {', '.join(h.host for h in stuck)} (the new version may still be live there: "
            "`edgecls deploy --status`); every other host it switched was rolled back")


def _finish(a: argparse.Namespace, outcomes: list) -> int:
    """Print the outcomes (one line, a table, or JSON lines); exit status 1 when any failed."""
    from . import run

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
