"""The repair ladder: what convert tries, in order, when the int8 gate finds real damage.

1. ``as asked``: the options the user gave.
2. ``more calibration``: four times the calibration photos, then all training photos (a range
   that the first few hundred photos missed is the cheapest damage to repair).
3. ``per-channel dense``: one weight scale per output channel of the dense layers, on the
   largest calibration set, only when no target runtime refuses such a model: tflite-runtime
   2.14 on arm64 crashes in ``invoke()`` on it (edge_runtime.model.interpreter refuses to load it
   there), so with ``tflite-runtime-arm64`` among the targets this rung is skipped, and says so.
4. ``quantization-aware fine-tune``: skipped, with the reason (see ``qat_unavailable``).

Each rung converts and evaluates again and is judged by ``convert.gate``; the first that passes
is kept, and its name goes into the bundle. Every rung's effect is logged and recorded. The
ladder itself is plain Python around an ``attempt`` callable, so it is tested without models.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Literal, get_args

from . import gate

TargetRuntime = Literal["ai-edge-litert", "tflite-runtime-arm64", "tensorflow"]
TARGET_RUNTIMES: tuple[str, ...] = get_args(TargetRuntime)
DEFAULT_TARGETS: tuple[str, ...] = ("ai-edge-litert", "tflite-runtime-arm64")  # the two Pi installs we support
# Runtimes known to crash on a per-channel dense layer, and why (kept in step with
# edge_runtime.model.interpreter, which refuses such a model on them).
REFUSES_PER_CHANNEL_DENSE = {"tflite-runtime-arm64": "tflite-runtime 2.14 on arm64 crashes in invoke() on "
                                                     "per-channel dense layers"}

AS_ASKED, MORE_CALIBRATION, PER_CHANNEL, QAT = ("as asked", "more calibration", "per-channel dense",
                                                "quantization-aware fine-tune")


@dataclass
class Rung:
    """One step of the ladder: the options it converts with, or why it is skipped."""

    name: str
    opts: Any = None  # convert.run.Options; None when skipped
    skipped: str = ""


def check_targets(targets: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    bad = [t for t in targets if t not in TARGET_RUNTIMES]
    if bad or not targets:
        raise ValueError(f"unknown target runtime {bad[0] if bad else '(none)'!r}; valid: {', '.join(TARGET_RUNTIMES)}")
    return tuple(dict.fromkeys(targets))


def qat_unavailable() -> str:
    """Why there is no quantization-aware fine-tune here ('' if there were one)."""
    try:
        import keras
        version = keras.__version__
    except ImportError:  # pragma: no cover - convert needs TensorFlow anyway
        version = "missing"
    try:
        import tensorflow_model_optimization  # noqa: F401
        have = "is installed, but its"
    except ImportError:
        have = "is not installed, and its"
    return (f"tensorflow-model-optimization {have} quantization-aware training wraps only Keras 2 models "
            f"(tf_keras), not this Keras {version} model")


def plan(opts: Any, n_train: int, targets: tuple[str, ...]) -> list[Rung]:
    """The rungs for ``opts`` (convert.run.Options) with ``n_train`` training photos."""
    rungs = [Rung(AS_ASKED, opts)]
    sizes = [n for n in (4 * opts.calibration, n_train) if opts.calibration < n <= n_train]
    for n in dict.fromkeys(sizes):
        rungs.append(Rung(f"{MORE_CALIBRATION} ({n} photos)", replace(opts, calibration=n)))
    if not sizes:
        rungs.append(Rung(MORE_CALIBRATION, skipped=f"already calibrated on all {n_train} training photos"))
    biggest = rungs[-1].opts or opts
    refusing = [t for t in targets if t in REFUSES_PER_CHANNEL_DENSE]
    if opts.per_channel_dense:
        rungs.append(Rung(PER_CHANNEL, skipped="already asked for (--per-channel-dense)"))
    elif refusing:
        rungs.append(Rung(PER_CHANNEL, skipped=f"refused: {REFUSES_PER_CHANNEL_DENSE[refusing[0]]} (target runtimes: "
                                              f"{', '.join(targets)}; a bundle never run by tflite-runtime on arm64 may "
                                              "allow it with --target-runtime ai-edge-litert)"))
    else:
        rungs.append(Rung(PER_CHANNEL, replace(biggest, per_channel_dense=True)))
    rungs.append(Rung(QAT, skipped=qat_unavailable()))
    return rungs


Attempt = Callable[[Any], tuple[Any, gate.Evidence]]  # options -> (what it made, its evidence)


def climb(attempt: Attempt, opts: Any, n_train: int, targets: tuple[str, ...],
          progress: Callable[[str], None], repair: bool = True) -> tuple[Any, Any, gate.Verdict, dict]:
    """Run the rungs until one passes the gate. Returns what ``attempt`` made, the options that
    made it, its verdict and the record for edgecls.json; raises ``Damaged`` if none passes."""
    rungs = plan(opts, n_train, check_targets(targets)) if repair else [Rung(AS_ASKED, opts)]
    steps: list[dict] = []
    last: gate.Verdict | None = None
    for i, rung in enumerate(rungs):
        if rung.opts is None:
            progress(f"repair {rung.name}: skipped, {rung.skipped}")
            steps.append({"step": rung.name, "skipped": rung.skipped})
            continue
        if i:
            progress(f"repair {rung.name}: converting again ({rung.opts.calibration} calibration photos, dense "
                     f"layers {'per channel' if rung.opts.per_channel_dense else 'per tensor'})")
        made, ev = attempt(rung.opts)
        v = gate.decide(ev, rung.opts.max_drop, rung.opts.alpha, rung.opts.min_agreement)
        steps.append(_record(rung, v, last))
        progress(gate.format_verdict(v) if not i else f"repair {rung.name}: {_effect(v, last)}")
        last = v
        if v.passed:
            record = {**v.to_json(), "passed_step": rung.name, "ladder": steps}
            return made, rung.opts, v, record
    if last is None:
        raise RuntimeError("the ladder ran no rung")  # cannot happen: the first rung always converts
    raise Damaged(last, steps, repair)


def _record(rung: Rung, v: gate.Verdict, before: gate.Verdict | None) -> dict:
    e = v.evidence
    return {"step": rung.name, "calibration_images": rung.opts.calibration,
            "per_channel_dense": rung.opts.per_channel_dense, "passed": v.passed, "drop_points": e.drop_points,
            "float_right_int8_wrong": e.float_right_int8_wrong, "int8_right_float_wrong": e.int8_right_float_wrong,
            "p_value": float(f"{e.p_value:.4g}"), "agreement": e.agreement,
            "drop_change_points": None if before is None else round(e.drop_points - before.evidence.drop_points, 2)}


def _effect(v: gate.Verdict, before: gate.Verdict | None) -> str:
    e = v.evidence
    was = "" if before is None else (f"drop {before.evidence.drop_points:.2f} -> {e.drop_points:.2f} points, agreement "
                                     f"{before.evidence.agreement:.1%} -> {e.agreement:.1%}; ")
    return was + ("passed: " if v.passed else "still failing: ") + v.reason


class Damaged(Exception):
    """Every rung failed the gate."""

    def __init__(self, verdict: gate.Verdict, steps: list[dict], repaired: bool):
        tried = "; ".join(f"{s['step']}: " + (f"skipped ({s['skipped'].split(' (target')[0]})" if "skipped" in s else
                                               f"drop {s['drop_points']:.2f} points, agreement {s['agreement']:.1%}")
                          for s in steps[1:])
        super().__init__(verdict.reason + (f"; repairs tried - {tried}" if repaired else "; no repairs tried (--no-repair)"))
        self.verdict, self.steps = verdict, steps
