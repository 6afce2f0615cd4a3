"""``edgecls bench BUNDLE --backend imx500``: the network runs on the Raspberry Pi AI Camera's sensor,
so what is measured is what each frame's metadata says and the rate classified frames arrive at."""

from __future__ import annotations

import time
from typing import Any

from edge_runtime.bench.stats import latency_stats
from edge_runtime.errors import BackendUnavailable
from edge_runtime.live import imx500
from edge_runtime.system.machine import peak_rss_mb, rss_mb

STALL_FRAMES = 100  # frames in a row without a DNN time before the measurement gives up ...
STALL_S = 10.0  # ... or seconds


def bench_row(model: str, runs: int | None, seconds: float | None, warmup: int) -> dict[str, Any]:
    """``edgecls bench BUNDLE --backend imx500``: the network runs on the sensor, so what is measured
    is what each request's metadata says (CnnKpiInfo: DNN and DSP time per frame) and the rate
    classified frames arrive at; ``invoke_ms`` holds the DNN times. One row, as ``bench.measure``."""
    net = imx500.network(model)
    rss0, t0 = rss_mb(), time.perf_counter()
    session = imx500.Session(net).open()  # uploads the network's firmware: the "create" time
    create_s = time.perf_counter() - t0
    try:
        t = time.perf_counter()
        _next_scored(session)
        first_s = time.perf_counter() - t
        for _ in range(warmup):
            _next_scored(session)
        dnn: list[float] = []
        frames, t_start = 0, time.perf_counter()
        deadline = t_start + (seconds or 0)
        stall = _Stall()
        while (len(dnn) < (runs or 0)) if seconds is None else (time.perf_counter() < deadline or not dnn):
            sc, kpi = session.read()
            frames += 1
            if sc is not None and kpi is not None:
                dnn.append(kpi[0] / 1e3)  # latency_stats takes seconds
                stall = _Stall()
            else:
                stall.count(sc is not None)
        elapsed = time.perf_counter() - t_start
    finally:
        session.close()
    stats = latency_stats(dnn)
    return {"status": "ok", "model": model, "model_file": str(net.rpk), "file_bytes": net.rpk.stat().st_size,
            "backend": "imx500", "threads": None, "interpreter": "imx500 (on the sensor)", "interpreter_version": "",
            "input": "camera", "inputs": 0, "input_conversion": "on the sensor", "create_ms": create_s * 1e3,
            "first_invoke_ms": first_s * 1e3, "warmup": warmup, "invoke_ms": stats,
            "throughput_per_s": len(dnn) / elapsed if elapsed else 0.0,
            "imx500": {"frames": frames, "classified": len(dnn), "without_tensor": frames - len(dnn),
                       "frames_per_s": frames / elapsed if elapsed else 0.0},
            "rss_mb": {"before_load": rss0, "after_load": rss_mb(), "added_by_load": rss_mb() - rss0,
                       "peak": peak_rss_mb()},
            "notes": ["invoke_ms is the DNN time the sensor reports per frame (CnnKpiInfo), not a CPU invoke"]}


class _Stall:
    """Frames in a row that gave no DNN time; raises BackendUnavailable past STALL_FRAMES or STALL_S."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.frames = self.with_tensor = 0

    def count(self, tensor: bool) -> None:
        self.frames += 1
        self.with_tensor += tensor
        took = time.perf_counter() - self.t0
        if self.frames < STALL_FRAMES and took < STALL_S:
            return
        if self.with_tensor:
            raise BackendUnavailable(
                f"the AI Camera sent {self.frames} frames in {took:.1f} s without a DNN time ({self.with_tensor} "
                "with an output tensor but no CnnKpiInfo); update the camera's firmware and picamera2 "
                "(sudo apt full-upgrade), or measure the frame rate with edgecls camera --backend imx500")
        raise BackendUnavailable(f"the AI Camera sent {self.frames} frames in {took:.1f} s without an output tensor; "
                                 "is the network loaded?")


def _next_scored(session: imx500.Session, limit: int = 100) -> None:
    """Read until a frame carries a tensor."""
    for _ in range(limit):
        if session.read()[0] is not None:
            return
    raise BackendUnavailable(f"the AI Camera sent {limit} frames without an output tensor; is the network loaded?")
