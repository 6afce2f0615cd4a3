"""``edgecls collect``: the command (parsed in ``cli.main``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edge_runtime.cli.args import nonneg_float, positive_int, wait_for_ctrl_c, web_args, web_options
from edge_runtime.bench import metrics
from edge_runtime.dataset.collect import Collector, Grabber, Saved, take
from edge_runtime.dataset.files import check_class
from edge_runtime.live import sources
from edge_runtime.live.zones import Zone
from edge_runtime.web import server as webview
from edge_runtime.web.collect import serve
from edge_runtime.web.teach import Teacher, next_out


def command(a: Any) -> int:
    """``edgecls collect``."""
    if a.serve and (a.label or a.count is not None):
        raise ValueError("--label and --count take photos without the page; with --serve, use the page's buttons "
                         "(--labels names them)")
    if a.bundle and not a.serve:
        raise ValueError("--bundle is for the page's Teach button; add --serve [HOST:]PORT")
    if not a.serve and not a.label:
        raise ValueError("give --serve [HOST:]PORT for the page, or --label CLASS (with --count, --every) to take "
                         "photos from the command line")
    labels = [x for x in (a.labels or "").split(",") if x.strip()]
    web = web_options(a, "collect") if a.serve else None  # a refused --public or users file: before the camera
    collector = Collector(a.dataset, labels, zone=Zone.parse(a.zone) if a.zone else None)
    teacher = _teacher(a.bundle, collector) if a.bundle else None  # a bad bundle: said before the camera opens
    source, note = sources.open_source(a.source, (a.width, a.height), fps=a.fps)
    source.open()
    print(f"edgecls: collecting from {source.name} into {collector.root}" + (f"; {note}" if note else ""),
          file=sys.stderr, flush=True)
    if not a.serve:
        count = a.count if a.count is not None else 50

        def said(s: Saved) -> None:
            print(s.path, flush=True)

        saved = take(collector, source, a.label, count, a.every, on_saved=said)
        print(f"edgecls: {len(saved)} photos of {a.label} saved in {collector.root / check_class(a.label)} "
              f"({collector.counts()[check_class(a.label)]} there now)"
              + ("" if len(saved) == count else f"; the input ended before {count}"), file=sys.stderr)
        return 0 if saved else 1
    try:
        host, port, options = web
        grabbed: list[Grabber] = []
        server, grabber = serve(collector, source, host, port, metrics=metrics.page_metrics(
            "collect", lambda: _collect_metrics(collector, grabbed[0])), teacher=teacher, **options)
        grabbed.append(grabber)
    except BaseException:
        source.close()
        if teacher is not None:
            teacher.close()
        raise
    print(f"edgecls: collect page on {webview.url(server)} - Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        wait_for_ctrl_c()
    finally:
        server.shutdown()
        grabber.close()
        left = teacher.close() if teacher is not None else None
        if left:
            print(f"edgecls: {left}", file=sys.stderr)
    counts = ", ".join(f"{c} {n}" for c, n in collector.counts().items()) or "no classes"
    print(f"edgecls: {collector.root}: {counts}", file=sys.stderr)
    return 0


def _teacher(bundle: str, collector: Collector) -> Teacher:
    """``--bundle``: the page's classifier and Teach button; says which bundle, or why it cannot teach."""
    teacher = Teacher(bundle, collector.root)
    if teacher.why_not:
        print(f"edgecls: the page classifies with {bundle}, but its Teach button cannot teach it: {teacher.why_not}",
              file=sys.stderr, flush=True)
    else:
        print(f"edgecls: the page classifies with {bundle}; its Teach button (admins) teaches it the class folders "
              f"of {collector.root} into a new bundle beside it (next: {next_out(teacher.parent)})",
              file=sys.stderr, flush=True)
    return teacher


def add_collect(sub: argparse._SubParsersAction) -> None:
    """``edgecls collect``'s parser."""
    p = sub.add_parser("collect", help="take photos with the camera into DATASET/<class>/: a web page with a button "
                       "per class (--serve), or --label CLASS --count N", description="Photos from the camera into "
                       "DATASET/<class>/ as JPEG (the full display picture), the layout `edgecls train` reads: written "
                       "atomically, never overwriting, named by time. --serve: a page with the live picture, a button "
                       "per class (keys 1-9; hold for a burst), counts, and the last photos with undo; with --bundle, "
                       "what the bundle sees and a Teach button.")
    p.add_argument("dataset", metavar="DATASET", help="the dataset folder (made if missing)")
    p.add_argument("--source", default="auto", help="auto, picamera2, opencv:N, /dev/videoN, a video file or a folder "
                   "of images (default auto)")
    p.add_argument("--serve", metavar="[HOST:]PORT", help="the collect page (default host 127.0.0.1)")
    web_args(p)
    p.add_argument("--bundle", metavar="BUNDLE", help="with --serve: the page shows what this bundle sees in the "
                   "live picture, and its Teach button (admins) teaches the bundle DATASET's classes on this "
                   "machine, holding out a photo per class to test, into BUNDLE.taught-N beside it (keep or undo)")
    p.add_argument("--labels", metavar="A,B", help="classes to show as buttons (besides DATASET's folders)")
    p.add_argument("--label", metavar="CLASS", help="without --serve: the class of the photos to take")
    p.add_argument("--count", type=positive_int, default=None, metavar="N", help="without --serve: photos to take "
                   "(default 50)")
    p.add_argument("--every", type=nonneg_float, default=0.5, metavar="S", help="without --serve: seconds between "
                   "photos (a file's frames are taken in order; default 0.5)")
    p.add_argument("--fps", type=nonneg_float, default=0.0, help="pace a folder of images at this rate")
    p.add_argument("--zone", metavar="NAME=X,Y,W,H", help="save only this zone of the full picture, as `edgecls "
                   "camera --zone` will classify it (pixels, or fractions when every value is <= 1)")
    p.add_argument("--width", type=positive_int, default=224, help=argparse.SUPPRESS)  # the Pi camera's lores size
    p.add_argument("--height", type=positive_int, default=224, help=argparse.SUPPRESS)
    p.set_defaults(func=command)


def _collect_metrics(collector: Collector, grabber: Grabber) -> list[metrics.PageMetric]:
    """The collect page's /metrics: the class folders and what this page did, read per scrape."""
    return [("edgecls_dataset_photos", "Photos in each class folder of the dataset", "gauge", "label",
             {c: float(n) for c, n in collector.counts().items()}),
            ("edgecls_collect_saved", "Photos saved by this page (less those undone), per class", "counter", "label",
             {c: float(n) for c, n in collector.saved.items()}),
            ("edgecls_errors", "Frames the source could not read (skipped files)", "counter", None,
             {"": float(grabber.errors)}),
            ("edgecls_source_ended", "1 once the camera or file stopped delivering frames", "gauge", None,
             {"": 1.0 if grabber.ended else 0.0})]
