"""Reports of ``edgecls bench`` results (one result file, or several devices in ``bench
compare``): the text or Markdown table, the machine lines, and the plot."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from edge_runtime.errors import EdgeclsError, MissingExtra

# One colour per backend (colour-blind safe: Okabe-Ito).
BACKEND_COLOURS = {"cpu": "#0072B2", "gpu": "#E69F00", "edgetpu": "#009E73", "imx500": "#CC79A7"}


def device_name(result: dict[str, Any]) -> str:
    """The board where there is one, else the CPU with its architecture and cores."""
    m = result.get("machine", {})
    return m.get("board") or f"{m.get('cpu', '?')} ({m.get('arch', '?')}, {m.get('cores', '?')} cores)"


def model_name(model: str) -> str:
    """Short name for a row: the file without .tflite, or the bundle directory's name."""
    p = Path(model)
    name = p.name
    for suffix in (".tflite", ".tar.gz", ".tgz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _rows(results: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(device_name(r), row) for r in results for row in r["results"]]


def table(results: Sequence[dict[str, Any]], markdown: bool = False) -> str:
    """One table over one or several result files (several devices in ``compare``)."""
    head = ["device", "model", "backend", "threads", "size KiB", "create ms", "first ms", "p50 ms", "p90 ms",
            "p99 ms", "mean ms", "per s", "RSS +MiB", "end to end ms"]
    lines = []
    for dev, r in _rows(results):
        name = Path(r["model"]).name
        if r.get("status") != "ok":
            cells = [dev, name, r["backend"], str(r["threads"] or "all"), "", "", "", "", "", "", "", "", "",
                     f"{r.get('status')}: {r.get('reason', '')}"[:120]]
        else:
            s = r["invoke_ms"]
            e2e = r.get("end_to_end_ms", {}).get("total")
            cells = [dev, name, r["backend"], str(r["threads"]), f"{r['file_bytes'] / 1024:.0f}", f"{r['create_ms']:.1f}",
                     f"{r['first_invoke_ms']:.2f}", f"{s['p50']:.3f}", f"{s['p90']:.3f}", f"{s['p99']:.3f}",
                     f"{s['mean']:.3f}", f"{r['throughput_per_s']:.0f}", f"{r['rss_mb']['added_by_load']:.1f}",
                     "" if e2e is None else f"{e2e:.2f}"]
        lines.append(cells)
    if len({c[0] for c in lines}) <= 1:  # one device: no column for it
        head, lines = head[1:], [c[1:] for c in lines]
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        out += ["| " + " | ".join(c) + " |" for c in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(c[i]) for c in lines)) if lines else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*c).rstrip() for c in [head, *lines])


def machine_lines(result: dict[str, Any]) -> list[str]:
    """The device, its CPU named once, interpreter versions, and anything that spoils a number."""
    m = result["machine"]
    where = (f"{m['board']}: {m['cpu']}, {m['cores']} cores, {m['arch']}" if m.get("board")
             else f"{m['cpu']}, {m['cores']} cores, {m['arch']}")
    lines = [f"{where}, governor {m['governor'] or 'n/a'}, edgecls {m['edgecls']}, "
             + ", ".join(f"{k} {v}" for k, v in m["interpreters"].items())]
    for when in ("before", "after"):
        b = result[f"board_{when}"]
        if b["temperature_c"] is not None or b["throttled"] is not None:
            lines.append(f"  board {when}: {b['temperature_c']} C, throttled {b['throttled']} "
                         f"{', '.join(b['throttle_flags'])}".rstrip())
    lines += [f"  warning: {w}" for w in m["warnings"]]
    if result["board_after"].get("throttle_flags"):
        lines.append("  warning: the board throttled during the run; these numbers are not its best")
    return lines


def markdown(results: Sequence[dict[str, Any]]) -> str:
    out = ["# edgecls bench", ""]
    for r in results:
        out += [f"- {line.strip()}" for line in machine_lines(r)]
    return "\n".join(out + ["", table(results, markdown=True), ""])


def _caption(results: Sequence[dict[str, Any]]) -> str:
    parts = []
    for r in results:
        m = r["machine"]
        interp = ", ".join(f"{k} {v}" for k, v in m["interpreters"].items())
        parts.append(f"{device_name(r)}" + (f" ({m['cpu']})" if m.get("board") else "") + f"; {interp}")
    return "\n".join(parts)


def plot(results: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Any:
    """Horizontal bars of p50 invoke latency, one row per configuration, with p90 and p99 marks,
    one colour per backend, rows grouped by device (``compare``), the machines in the caption.
    Returns the matplotlib figure (closed after saving; tests read its layout)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise MissingExtra("--plot", "plot", "matplotlib") from e
    rows = sorted(((dev, r) for dev, r in _rows(results) if r.get("status") == "ok"),
                  key=lambda x: (x[0], model_name(x[1]["model"]), x[1]["backend"], x[1]["threads"]))
    if not rows:
        raise EdgeclsError("nothing to plot: no configuration ran")
    several = len({dev for dev, _ in rows}) > 1
    labels = [f"{_middle(model_name(r['model']), 40)}  {r['threads']} thr" for _, r in rows]
    y = list(range(len(rows)))[::-1]  # first row on top
    height = 1.2 + 0.32 * len(rows) + 0.3 * len(results)
    fig, ax = plt.subplots(figsize=(8, height))
    for yi, (dev, r) in zip(y, rows):
        s = r["invoke_ms"]
        ax.barh(yi, s["p50"], color=BACKEND_COLOURS.get(r["backend"], "#999999"), height=0.7)
        ax.plot([s["p90"]], [yi], marker="|", markersize=10, color="black")
        ax.plot([s["p99"]], [yi], marker="|", markersize=10, color="#D55E00")
    ax.set_yticks(y, labels, fontsize=8)
    if several:
        _device_bands(ax, rows, y)
    handles = [plt.Rectangle((0, 0), 1, 1, color=BACKEND_COLOURS.get(b, "#999999"))
               for b in sorted({r["backend"] for _, r in rows})]
    names = sorted({r["backend"] for _, r in rows})
    handles += [plt.Line2D([], [], marker="|", markersize=10, ls="", color=c) for c in ("black", "#D55E00")]
    ax.legend(handles, names + ["p90", "p99"], fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0),
              ncol=len(handles), frameon=False)
    ax.set_xlabel("invoke latency, ms (bar: p50)")
    ax.set_title("edgecls bench", fontsize=11, pad=22)
    ax.grid(axis="x", alpha=0.3)
    fig.text(0.01, 0.005, _caption(results), fontsize=7, va="bottom", color="#444444")
    fig.tight_layout(rect=(0, 0.15 / height + 0.14 * len(results) / height, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return fig


def _middle(text: str, width: int) -> str:
    """``text`` shortened in the middle, so that names differing at either end stay apart."""
    if len(text) <= width:
        return text
    half = (width - 1) // 2
    return text[:half] + "…" + text[-(width - 1 - half):]


def _device_bands(ax: Any, rows: list[tuple[str, dict[str, Any]]], y: list[int]) -> None:
    """Shade every other device's rows and name the device at the top of its group."""
    devices = list(dict.fromkeys(dev for dev, _ in rows))
    for i, dev in enumerate(devices):
        ys = [yi for yi, (d, _) in zip(y, rows) if d == dev]
        if i % 2:
            ax.axhspan(min(ys) - 0.5, max(ys) + 0.5, color="#f0f0f0", zorder=0)
        ax.text(1.0, max(ys) + 0.45, dev[:60], transform=ax.get_yaxis_transform(), ha="right", va="top",
                fontsize=7, color="#444444")
