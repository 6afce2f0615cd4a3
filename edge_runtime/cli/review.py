"""``edgecls review``: the command (parsed in ``cli.main``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edge_runtime.cli.args import wait_for_ctrl_c, web_args, web_options
from edge_runtime.bench import metrics
from edge_runtime.dataset.files import count_images
from edge_runtime.dataset.review import REVIEW, Reviewer
from edge_runtime.web import server as webview
from edge_runtime.web.review import serve


def command(a: Any) -> int:
    """``edgecls review``."""
    reviewer = Reviewer(a.dataset)
    host, port, web = web_options(a, "review")
    server = serve(reviewer, host, port, metrics=metrics.page_metrics("review", lambda: _review_metrics(reviewer)),
                   **web)
    print(f"edgecls: review page on {webview.url(server)} ({len(reviewer.pending())} frames in {reviewer.root / REVIEW}) "
          "- Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        wait_for_ctrl_c()
    finally:
        server.shutdown()
    print(f"edgecls: {len(reviewer.pending())} frames left in {reviewer.root / REVIEW}", file=sys.stderr)
    return 0


def add_review(sub: argparse._SubParsersAction) -> None:
    """``edgecls review``'s parser."""
    p = sub.add_parser("review", help="sort the frames in DATASET/_review/ into classes on a web page",
                       description="A page showing the frames `edgecls pull` put in DATASET/_review/<predicted>/, "
                       "with the predicted label and score; a button moves each into a class folder (or a new "
                       "one), or discards it (to DATASET/_discarded/). Moves are atomic and never overwrite.")
    p.add_argument("dataset", metavar="DATASET", help="the dataset folder")
    p.add_argument("--serve", metavar="[HOST:]PORT", required=True, help="the review page (default host 127.0.0.1)")
    web_args(p)
    p.set_defaults(func=command)


def _review_metrics(reviewer: Reviewer) -> list[metrics.PageMetric]:
    """The review page's /metrics: frames waiting, the class folders, what this page sorted."""
    return [("edgecls_review_pending", f"Frames waiting in {REVIEW}/ to be sorted", "gauge", None,
             {"": float(len(reviewer.pending()))}),
            ("edgecls_dataset_photos", "Photos in each class folder of the dataset", "gauge", "label",
             {c: float(count_images(reviewer.root / c)) for c in reviewer.classes()}),
            ("edgecls_review_sorted", "Frames sorted by this page, by what was done with them", "counter", "action",
             {k: float(v) for k, v in reviewer.sorted.items()})]
