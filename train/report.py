"""The run's report: ``report.md`` with ``curves.png`` and ``confusion.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_runtime.errors import MissingExtra

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError as e:
    raise MissingExtra("training reports", "train", "matplotlib") from e


def curves(history: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = list(range(1, len(history) + 1))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for k, style in ((key, "-"), (f"val_{key}", "--")):
            ys = [r.get(k) for r in history]
            if any(v is not None for v in ys):
                ax.plot(xs, ys, style, label=k)
        phase2 = next((i for i, r in enumerate(history) if r["phase"] == 2), None)
        if phase2:
            ax.axvline(phase2 + 0.5, color="grey", lw=0.8)
            ax.text(phase2 + 0.7, ax.get_ylim()[1], "fine-tune", va="top", fontsize=8, color="grey")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion(cm: list[list[int]], classes: list[str], path: Path, title: str) -> None:
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.5 * n, 1.0 + 0.5 * n))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=90 if n > 6 else 0)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = max(max(r) for r in cm) or 1
    for i in range(n):
        for j in range(n):
            if cm[i][j]:
                ax.text(j, i, cm[i][j], ha="center", va="center", fontsize=8,
                        color="white" if cm[i][j] > top / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(out: Path, cfg: Any, ds: Any, history: list[dict], metrics: dict) -> None:
    curves(history, out / "curves.png")
    test = metrics["test"]
    confusion(test["confusion"], ds.classes, out / "confusion.png", f"test split, top-1 {test['top1']:.1%}")
    lines = [f"# Training run: {cfg.arch} alpha {cfg.alpha:g} at {cfg.size} px", "",
             f"- data: `{ds.root}` (fingerprint `{ds.fingerprint[:16]}`), {len(ds.classes)} classes, "
             f"{len(ds.samples)} images, {len(ds.skipped)} skipped",
             f"- weights: {cfg.weights or 'none (from scratch)'}",
             f"- epochs: {metrics['epochs'][1]} (phase 1, head) + {metrics['epochs'][2]} (phase 2, fine-tune)",
             f"- **test top-1: {test['top1']:.2%}** on {test['count']} images"
             + (f"; validation {metrics['val']['top1']:.2%} on {metrics['val']['count']}" if "val" in metrics else ""),
             "", "| class | train | val | test | test top-1 |", "| --- | --- | --- | --- | --- |"]
    counts = ds.counts()
    for c in ds.classes:
        acc = test["per_class"][c]
        lines.append(f"| {c} | {counts[c]['train']} | {counts[c]['val']} | {counts[c]['test']} | "
                     f"{'-' if acc is None else f'{acc:.1%}'} |")
    lines += ["", "![training curves](curves.png)", "", "![confusion matrix](confusion.png)", ""]
    if ds.warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in ds.warnings] + [""]
    if ds.skipped:
        lines += ["## Skipped files", "", "| file | reason |", "| --- | --- |"]
        lines += [f"| `{rel}` | {why} |" for rel, why in ds.skipped] + [""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
