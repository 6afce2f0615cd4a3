"""The int8 gate: does quantization damage the model, or is the difference noise?

Float and int8 are judged on the same test images, so the evidence is paired. Only the images
on which they disagree about correctness carry information: ``b`` images float gets right and
int8 gets wrong, ``c`` images the reverse. If int8 did no harm, each of those ``b + c`` images
is equally likely to fall either way, so ``b`` is Binomial(b + c, 1/2): McNemar's test, done
exactly (no chi-square approximation, which is poor for the handful of flips a good int8
model makes). The gate fails when

- the top-1 drop ``(b - c) / n`` exceeds ``max_drop`` points *and* the two-sided exact McNemar
  p-value is below ``alpha`` (the drop is unlikely to be chance), or
- int8 agrees with float (same top-1) on fewer than ``min_agreement`` of the images, whatever
  the accuracy says (a model that changes many answers, right ones for other right ones, is
  not the model that was trained).

With few test images even the worst flips cannot be told from chance: ``m`` flips all one way
are significant only from ``m = min_flips(alpha)`` on (6 at 0.05), so the smallest drop the
test can see is ``100 * m / n`` points (none at all below ``m`` images). When that exceeds
``JUDGE_LIMIT`` points the gate says plainly that it cannot judge the drop, and records that it
did not judge. The agreement floor needs no test and holds at any number of images: below it
the gate fails, judged, whatever the number (with ``n`` images one changed answer costs
``100 / n`` points of agreement, and the message says so).

``convert --imx500`` judges the IMX500's network against float by the same rule and options
(``convert.imx500.judge``).

Pure Python (``math.comb``): no scipy on the conversion path.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

ALPHA = 0.05  # the stated level of the McNemar test
MIN_AGREEMENT = 0.95  # int8 and float give the same top-1 on at least this fraction
JUDGE_LIMIT = 5.0  # points: a test that cannot see a drop this large cannot judge


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs: twice the smaller
    binomial tail of Binomial(b + c, 1/2), capped at 1. ``b = c = 0`` gives 1."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b} and {c}")
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    # Exact integers up to the one division: no underflow for thousands of images.
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2 ** n)


def min_flips(alpha: float = ALPHA) -> int:
    """The fewest discordant pairs, all one way, whose exact McNemar p-value is below ``alpha``."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return max(1, math.floor(math.log2(2 / alpha)) + 1)


def min_images(alpha: float = ALPHA, limit: float = JUDGE_LIMIT) -> int:
    """The fewest test images on which the gate can see a drop of ``limit`` points."""
    return math.ceil(100 * min_flips(alpha) / limit)


@dataclass
class Evidence:
    """The paired comparison of float and int8 on one test set."""

    test_images: int
    float_right_int8_wrong: int  # b
    int8_right_float_wrong: int  # c
    agreement: float  # same top-1, right or wrong
    drop_points: float  # float top-1 minus int8 top-1, in percentage points
    p_value: float  # two-sided exact McNemar on b and c
    flipped: dict[str, dict[str, int]] = field(default_factory=dict)  # class -> counts, classes with flips only


def compare(float_pred: np.ndarray, int8_pred: np.ndarray, y: np.ndarray, labels: list[str]) -> Evidence:
    """The evidence from the top-1 predictions of float and int8 and the true labels."""
    float_pred, int8_pred, y = (np.asarray(a).astype(np.int64) for a in (float_pred, int8_pred, y))
    if not len(y) == len(float_pred) == len(int8_pred):
        raise ValueError(f"prediction lengths differ: {len(float_pred)}, {len(int8_pred)}, {len(y)} labels")
    f_ok, q_ok = float_pred == y, int8_pred == y
    lost, won, changed = f_ok & ~q_ok, q_ok & ~f_ok, float_pred != int8_pred
    b, c, n = int(lost.sum()), int(won.sum()), len(y)
    flipped = {}
    for i, name in enumerate(labels):
        row = y == i
        if changed[row].any():
            flipped[name] = {"float_right_int8_wrong": int(lost[row].sum()), "int8_right_float_wrong": int(won[row].sum()),
                             "changed": int(changed[row].sum()), "images": int(row.sum())}
    return Evidence(n, b, c, round(float(1 - changed.mean()), 4) if n else 1.0,
                    round(100 * (b - c) / n, 2) if n else 0.0, mcnemar_exact(b, c), flipped)


@dataclass
class Verdict:
    passed: bool
    judged: bool  # False: too few test images to tell damage from noise
    reason: str  # one sentence, for the log and the error message
    evidence: Evidence
    max_drop: float
    alpha: float
    min_agreement: float

    def to_json(self) -> dict[str, Any]:
        e = asdict(self.evidence)
        e["p_value"] = float(f"{self.evidence.p_value:.4g}")
        return {"passed": self.passed, "judged": self.judged, "reason": self.reason, "max_drop": self.max_drop,
                "alpha": self.alpha, "min_agreement": self.min_agreement, "test": "exact McNemar, two-sided", **e}


def decide(ev: Evidence, max_drop: float = 1.0, alpha: float = ALPHA, min_agreement: float = MIN_AGREEMENT,
           name: str = "int8") -> Verdict:
    """Pass or fail the quantized model on ``ev`` (see the module docstring for the rule);
    ``name`` is what the messages call it (the IMX500's network is judged by the same rule)."""
    b, c, n = ev.float_right_int8_wrong, ev.int8_right_float_wrong, ev.test_images
    counts = (f"float right/{name} wrong {b}, {name} right/float wrong {c}, p = {ev.p_value:.3g}, "
              f"agreement {ev.agreement:.1%} of {n}")

    def verdict(passed: bool, judged: bool, reason: str) -> Verdict:
        return Verdict(passed, judged, f"{reason} ({counts})", ev, max_drop, alpha, min_agreement)

    enough = n >= min_images(alpha)
    if enough and ev.drop_points > max_drop + 1e-9 and ev.p_value < alpha:
        return verdict(False, True, f"{name} damage is real: top-1 {ev.drop_points:.2f} points below float "
                       f"(--max-drop {max_drop:g}), unlikely to be chance (p < {alpha:g})")
    if ev.agreement < min_agreement:
        few = "" if enough else (f"; with {n} test images one changed answer is {100 / n:.0f} points of agreement: "
                                 "add photos or lower --min-agreement")
        return verdict(False, True, f"{name} changes too many answers: agreement with float {ev.agreement:.1%} is "
                       f"below the floor {min_agreement:.0%}{few}")
    if not enough:
        return verdict(True, False, too_few(n, alpha, name))
    if ev.drop_points > max_drop + 1e-9:
        return verdict(True, True, f"{name} top-1 is {ev.drop_points:.2f} points below float, more than --max-drop "
                       f"{max_drop:g}, but within noise (p >= {alpha:g}): passed")
    return verdict(True, True, f"{name} top-1 {ev.drop_points:.2f} points below float, within --max-drop "
                   f"{max_drop:g}: passed")


def too_few(n: int, alpha: float = ALPHA, name: str = "int8") -> str:
    """Why ``n`` test images cannot judge a drop, in true numbers: with fewer images than the
    flips a significant drop needs, no drop at all can be seen."""
    m, need = min_flips(alpha), min_images(alpha)
    if n < m:
        seen = (f"with {n} test images no drop at all can be told from chance (that takes {m} answers lost and "
                "none gained)")
    else:
        seen = f"with {n} test images only a drop of {100 * m / n:.0f} points or more can be told from chance"
    return (f"too few test images to judge {name}'s top-1 drop: {seen}; the drop is not judged, the agreement "
            f"floor held - add photos for at least {need} test images")


def format_verdict(v: Verdict, title: str = "int8 gate") -> str:
    """A few lines for the convert report: the verdict, then the classes that flipped."""
    lines = [f"{title}: {v.reason}"]
    for name, f in v.evidence.flipped.items():
        lines.append(f"  class {name}: {f['changed']} of {f['images']} answers changed "
                     f"({f['float_right_int8_wrong']} lost, {f['int8_right_float_wrong']} gained)")
    return "\n".join(lines)
