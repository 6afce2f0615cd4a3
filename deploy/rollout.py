"""Staged rollouts: a bundle reaches a fleet in stages, and a bad one stops early.

    1. canaries: the first ``canary`` hosts of the inventory, in parallel;
    2. then the rest, in waves of ``wave_size`` (0: all at once), ``parallel`` connections at most.

Each host is deployed as ``edgecls deploy`` does (upload, sha256, device-side verify, atomic
switch), then checked: it is healthy when the device-side verify passed (unless ``--no-verify``,
which the report says) and, where the camera service runs, its status.json shows frames
advancing without errors for ``soak`` seconds with the latency within ``max_latency_ratio`` of
what it was before and, with ``max_drift``, its drift from the bundle's reference at most that.
A host that switched but is not healthy (a failed ``--service`` install
included) is rolled back at once. When more than ``max_failures`` hosts have failed, the rollout
stops after the current stage: every host this run switched is rolled back, the hosts not yet
reached are left alone, and the report says for each host what happened and why. A rollback
that fails (an error, a host that stops answering) is recorded as ROLLBACK FAILED for that host;
the others go on and the report is still written.
"""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from edge_runtime.errors import EdgeclsError

from . import health, run, ssh
from .inventory import Host


@dataclass
class Policy:
    canary: int = 1
    wave_size: int = 0  # 0: every host after the canaries in one wave
    soak: float = 10.0
    max_latency_ratio: float | None = 1.5
    max_failures: int = 0
    parallel: int = 8
    max_drift: float | None = None  # the canary's drift at the end of the soak (None: not checked)

    def __post_init__(self) -> None:
        for name in ("canary", "wave_size", "max_failures"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be 0 or more")
        if self.soak < 0:
            raise ValueError("--soak must be 0 or more seconds")
        if self.max_latency_ratio is not None and self.max_latency_ratio <= 0:
            raise ValueError("--max-latency-ratio must be above 0 (e.g. 1.5)")
        if self.max_drift is not None and self.max_drift < 0:
            raise ValueError("--max-drift must be 0 or more (e.g. 0.25)")


@dataclass
class HostResult:
    host: str
    target: str
    stage: str
    result: str = "not reached"  # healthy | failed | rolled back | rollback failed | not reached
    before: str | None = None  # the version live before this run
    after: str | None = None  # the version live when the run ended
    reason: str = ""
    switched: bool = False
    seconds: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    bundle: str
    version: str
    policy: Policy
    started: str
    hosts: list[HostResult]
    stopped: str | None = None  # why the rollout stopped, or None when it went through
    seconds: float = 0.0
    verify: bool = True  # the device-side verify ran before each switch (False: --no-verify)

    @property
    def rollback_failed(self) -> list[HostResult]:
        """The hosts this run switched and could not switch back."""
        return [h for h in self.hosts if ROLLBACK_FAILED in h.reason]

    @property
    def ok(self) -> bool:
        return self.stopped is None and all(h.result == "healthy" for h in self.hosts)

    def to_dict(self) -> dict[str, Any]:
        return {"bundle": self.bundle, "version": self.version, "started": self.started, "ok": self.ok,
                "stopped": self.stopped, "verify": self.verify, "seconds": round(self.seconds, 2),
                "policy": asdict(self.policy),
                "hosts": [asdict(h) for h in self.hosts]}

    def table(self) -> str:
        rows = [("host", "stage", "result", "live now", "reason")]
        rows += [(h.host, h.stage, h.result, h.after or "-", h.reason) for h in self.hosts]
        w = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]:<{w[3]}}  {r[4]}".rstrip()
                         for r in rows)

    def markdown(self) -> str:
        p = self.policy
        head = [f"# Rollout of {self.bundle}", "",
                f"- version: `{self.version}`", f"- started: {self.started} (UTC), took {self.seconds:.1f} s",
                f"- policy: canary {p.canary}, wave size {p.wave_size or 'all'}, soak {p.soak:g} s, "
                f"max latency ratio {p.max_latency_ratio or '-'}, max drift {'-' if p.max_drift is None else p.max_drift}, "
                f"max failures {p.max_failures}",
                f"- health: {HEALTH_VERIFIED if self.verify else HEALTH_UNVERIFIED}",
                f"- result: {'**stopped**: ' + self.stopped if self.stopped else 'every host healthy' if self.ok else 'finished with failures'}",
                "", "| host | stage | result | before | live now | reason |", "| --- | --- | --- | --- | --- | --- |"]
        cell = lambda s: (s or "-").replace("|", "\\|")  # noqa: E731
        rows = [f"| {cell(h.host)} | {h.stage} | {h.result} | {cell(h.before)} | {cell(h.after)} | {cell(h.reason)} |"
                for h in self.hosts]
        return "\n".join(head + rows) + "\n"


def stages(n: int, canary: int, wave_size: int) -> list[tuple[str, list[int]]]:
    """Host indices per stage: the canaries, then waves."""
    out: list[tuple[str, list[int]]] = []
    first = min(canary, n)
    if first:
        out.append(("canary", list(range(first))))
    rest = list(range(first, n))
    size = wave_size or len(rest) or 1
    for w, i in enumerate(range(0, len(rest), size), 1):
        out.append((f"wave {w}", rest[i:i + size]))
    return out


ROLLBACK_FAILED = "ROLLBACK FAILED"
UNKNOWN = "unknown (the device could not be asked)"
HEALTH_VERIFIED = ("the golden photos verified on the device before each switch, then the camera service's "
                   "frames, errors and latency during the soak")
HEALTH_UNVERIFIED = ("no device-side verify (--no-verify): only the camera service's frames, errors and latency "
                     "during the soak, where it runs")

Deployer = Callable[[Host, ssh.Options], run.Outcome]
Log = Callable[[str], None]


def rollout(hosts: list[Host], bundle: str, version: str, opts: ssh.Options, policy: Policy, deploy: Deployer,
            verify: bool = True, log: Log = lambda m: None) -> Report:
    """Run the staged rollout; ``deploy(host, options)`` sends the bundle to one host (run.deploy)."""
    t0 = time.perf_counter()
    report = Report(bundle, version, policy, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                    [HostResult(h.name, str(h.target), "") for h in hosts], verify=verify)
    failures = 0
    for name, idx in stages(len(hosts), policy.canary, policy.wave_size):
        log(f"{name}: {', '.join(hosts[i].name for i in idx)}")
        for i in idx:
            report.hosts[i].stage = name
        with ThreadPoolExecutor(max_workers=max(1, min(policy.parallel, len(idx)))) as pool:
            done = list(pool.map(lambda i: _guarded(hosts[i], report.hosts[i], opts, policy, deploy, verify, version),
                                 idx))
        failures += sum(r.result != "healthy" for r in done)
        if failures > policy.max_failures:
            report.stopped = (f"{failures} host(s) failed by the end of the {name} (more than --max-failures "
                              f"{policy.max_failures})")
            log(f"stopping: {report.stopped}; rolling back every host this run switched")
            _roll_back_switched(hosts, report, opts, policy.parallel)
            for r in report.hosts:
                if not r.stage:
                    r.stage, r.reason = "-", "not deployed: the rollout stopped before this host"
            break
    report.seconds = time.perf_counter() - t0
    return report


def _guarded(host: Host, r: HostResult, opts: ssh.Options, policy: Policy, deploy: Deployer,
             verify: bool, version: str) -> HostResult:
    """``_one``, where an error nobody foresaw fails this host only: the others and the report go on."""
    t0 = time.perf_counter()
    try:
        return _one(host, r, opts, policy, deploy, verify, version)
    except Exception as e:  # noqa: BLE001 - one host's surprise must not lose the fleet's report
        r.result = "failed" if r.result in ("not reached", "healthy") else r.result
        r.reason = _also(r.reason, f"unexpected error: {type(e).__name__}: {e}")
        r.seconds = round(time.perf_counter() - t0, 2)
        return r


def _one(host: Host, r: HostResult, opts: ssh.Options, policy: Policy, deploy: Deployer, verify: bool,
         version: str) -> HostResult:
    """Deploy to one host and check its health; roll it back when it switched but is not healthy."""
    t0 = time.perf_counter()
    o = host.options(opts)
    try:
        before = health.probe(host.target, o)
    except (health.ProbeError, OSError, subprocess.SubprocessError) as e:
        r.result, r.reason, r.seconds = "failed", f"not deployed: {e}", round(time.perf_counter() - t0, 2)
        r.after = UNKNOWN
        return r
    r.before = r.after = before["current"]
    try:
        out = deploy(host, o)
    except (EdgeclsError, OSError, subprocess.SubprocessError) as e:
        out = run.Outcome(str(host.target), False, "deploy", version, message=str(e))
    if not out.ok and not out.switched and out.version and _live_now(host, o, r) == out.version:
        out.switched = True  # the connection was lost after the device switched
    if not out.ok and not out.switched:
        r.result, r.reason = "failed", out.message
    elif not out.ok:  # switched, then failed (e.g. the --service install): the new version is live, go back
        r.switched, r.after = True, out.version
        r.result, r.reason = "failed", out.message
        _roll_back(host, r, o)
    else:
        r.switched, r.after = True, out.version
        r.facts["verify"] = "passed on the device" if verify else "skipped (--no-verify)"
        problems: list[str] = []
        try:
            problems += health.soak_problems(host.target, o, before, health.Soak(policy.soak, policy.max_latency_ratio,
                                                                                 policy.max_drift),
                                             r.facts)
        except (health.ProbeError, OSError, subprocess.SubprocessError) as e:
            problems.append(f"health check failed: {e}")
        r.result, r.reason = ("healthy", "") if not problems else ("failed", "; ".join(problems))
        if problems:
            _roll_back(host, r, o)
    r.seconds = round(time.perf_counter() - t0, 2)
    return r


def _live_now(host: Host, o: ssh.Options, r: HostResult) -> str | None:
    """What the device runs now, after a deploy that failed (it may have switched first); None,
    and ``r.after`` says so, when the device cannot be asked."""
    try:
        r.after = health.probe(host.target, o)["current"]
    except (health.ProbeError, OSError, subprocess.SubprocessError):
        r.after = UNKNOWN
        return None
    return r.after


def _also(reason: str, more: str) -> str:
    return (reason + "; " if reason else "") + more


def _roll_back(host: Host, r: HostResult, o: ssh.Options) -> None:
    """Switch ``host`` back; a rollback that fails or raises is recorded as ROLLBACK FAILED, never raised."""
    try:
        back = run.rollback(host.target, o)
    except (EdgeclsError, OSError, subprocess.SubprocessError) as e:
        why = f"no answer within {e.timeout:g} s" if isinstance(e, subprocess.TimeoutExpired) else str(e)
        back = run.Outcome(str(host.target), False, "rollback", message=why)
    if back.ok:
        r.result, r.after = "rolled back", back.version
        r.reason = _also(r.reason, f"rolled back to {back.version}")
    else:
        r.result = "rollback failed"
        r.reason = _also(r.reason, f"{ROLLBACK_FAILED}: {back.message}; {r.after or 'the new version'} may still be "
                                   "live - check with `edgecls deploy --status`")


def _roll_back_switched(hosts: list[Host], report: Report, opts: ssh.Options, parallel: int) -> None:
    todo = [(h, r) for h, r in zip(hosts, report.hosts) if r.switched and r.result == "healthy"]
    for _, r in todo:
        r.reason = "healthy, but the rollout stopped"
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(todo) or 1))) as pool:
        list(pool.map(lambda hr: _roll_back(hr[0], hr[1], hr[0].options(opts)), todo))
