"""``edgecls teach``: the command (parsed in ``cli.main``); the work is ``dataset/teach.py``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edge_runtime.dataset.teach import MIN_PHOTOS, teach


def command(a: Any) -> int:
    """``edgecls teach``."""
    def progress(s: str) -> None:
        if not a.json:
            print(f"edgecls: {s}", file=sys.stderr, flush=True)

    r = teach(a.bundle, a.dataset, a.out, only=a.only, name=a.name, progress=progress)
    if a.json:
        print(json.dumps({"bundle": str(r.bundle), "labels": r.labels, "added": r.added, "refined": r.refined,
                          "kept": r.kept, "photos": r.photos, "seconds": round(r.seconds, 3),
                          "embed_ms_per_photo": round(r.embed_ms, 3)}), flush=True)
        return 0
    parts = [f"added {', '.join(r.added)}" if r.added else "", f"refined {', '.join(r.refined)}" if r.refined else "",
             f"kept {len(r.kept)}" if r.kept else ""]
    print(f"edgecls: wrote {r.bundle}: {len(r.labels)} classes ({'; '.join(p for p in parts if p)}) from "
          f"{r.photos} photos in {r.seconds:.1f} s ({r.embed_ms:.1f} ms a photo to embed); check it with: "
          f"edgecls verify {r.bundle}", flush=True)
    return 0


def add_teach(sub: argparse._SubParsersAction) -> None:
    """``edgecls teach``'s parser."""
    p = sub.add_parser("teach", help="new classes from a few photos, on the device",
                       description="Teach a bundle new classes from a folder per class of photos (at least "
                       f"{MIN_PHOTOS} each, 10 is better), here, without TensorFlow: the bundle's own model embeds "
                       "each photo and a nearest-class-mean head over those features replaces the model's "
                       "classifier. The bundle's classes are kept (a folder named as one refines it) unless --only. "
                       "Writes a new bundle that records its parent and the photos, with golden photos for "
                       "`edgecls verify`; the parent is unchanged. Needs a bundle made by this edgecls's convert.")
    p.add_argument("bundle", metavar="BUNDLE", help="the bundle to teach (directory or .tar.gz)")
    p.add_argument("dataset", metavar="DATASET", help="a folder with one sub-folder of photos per class")
    p.add_argument("--out", required=True, metavar="NEW_BUNDLE", help="where to write the taught bundle")
    p.add_argument("--only", action="store_true", help="the taught classes replace the bundle's classes")
    p.add_argument("--name", default=None, help="the new bundle's name (default: the --out folder's name)")
    p.add_argument("--json", action="store_true", help="the result as one JSON line")
    p.set_defaults(func=command)
