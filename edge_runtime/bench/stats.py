"""Statistics of measured times."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """count, min, mean, std, p50, p90, p99, max in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"count": int(ms.size), "min": float(ms.min()), "mean": float(ms.mean()), "std": float(ms.std()),
            "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(ms.max())}
