"""``edgecls teach``: the command (parsed in ``cli.main``); the work is ``dataset/teach.py``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from edge_runtime.bundle.deployed import KEEP
from edge_runtime.cli.args import positive_int
from edge_runtime.dataset.teach import MIN_PHOTOS, teach, teach_into


def command(a: Any) -> int:
    """``edgecls teach``."""
    def progress(s: str) -> None:
        if not a.json:
            print(f"edgecls: {s}", file=sys.stderr, flush=True)

    if a.into is None and a.bundle is None:
        raise ValueError("teach --out needs the bundle to teach: edgecls teach BUNDLE DATASET --out NEW_BUNDLE "
                         "(or --into DIR, a deployed folder, to teach its live version)")
    if a.into is None and a.keep is not None:
        raise ValueError("--keep applies to --into DIR (the versions kept there); drop it with --out")
    if a.into is None:
        r = teach(a.bundle, a.dataset, a.out, only=a.only, name=a.name, progress=progress)
    else:
        r = teach_into(a.into, a.dataset, a.bundle, only=a.only, name=a.name, keep=KEEP if a.keep is None else a.keep, progress=progress)
    if a.json:
        print(json.dumps({"bundle": str(r.bundle), "labels": r.labels, "added": r.added, "refined": r.refined,
                          "kept": r.kept, "photos": r.photos, "seconds": round(r.seconds, 3),
                          "embed_ms_per_photo": round(r.embed_ms, 3),
                          **({"version": r.version, "was": r.was} if a.into is not None else {})}), flush=True)
        return 0
    parts = [f"added {', '.join(r.added)}" if r.added else "", f"refined {', '.join(r.refined)}" if r.refined else "",
             f"kept {len(r.kept)}" if r.kept else ""]
    print(f"edgecls: wrote {r.bundle}: {len(r.labels)} classes ({'; '.join(p for p in parts if p)}) from "
          f"{r.photos} photos in {r.seconds:.1f} s ({r.embed_ms:.1f} ms a photo to embed); "
          + (f"check it with: edgecls verify {r.bundle}" if a.into is None else
             f"its golden photos pass; live now (was {r.was}): a camera running on {a.into}/current switches to it "
             "between two frames, and `edgecls deploy --rollback` goes back"), flush=True)
    return 0


def add_teach(sub: argparse._SubParsersAction) -> None:
    """``edgecls teach``'s parser."""
    p = sub.add_parser("teach", help="new classes from a few photos, on the device",
                       description="Teach a bundle new classes from a folder per class of photos (at least "
                       f"{MIN_PHOTOS} each, 10 is better), here, without TensorFlow: the bundle's own model embeds "
                       "each photo and a nearest-class-mean head over those features replaces the model's "
                       "classifier. The bundle's classes are kept (a folder named as one refines it) unless --only. "
                       "Writes a new bundle that records its parent and the photos, with golden photos for "
                       "`edgecls verify`; the parent is unchanged. --into DIR (a folder `edgecls deploy` made) "
                       "adds it there as a new version and makes it live as a deploy does: a camera running on "
                       "DIR/current switches to it without a restart. Needs a bundle made by this edgecls's convert.")
    p.add_argument("bundle", metavar="BUNDLE", nargs="?", default=None,
                   help="the bundle to teach (directory or .tar.gz); with --into it may be left out: DIR's live version")
    p.add_argument("dataset", metavar="DATASET", help="a folder with one sub-folder of photos per class")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="NEW_BUNDLE", help="where to write the taught bundle")
    where.add_argument("--into", metavar="DIR", help="a deployed bundle folder (DIR/current, DIR/versions/): the "
                       "taught bundle becomes a new version there and goes live, as edgecls deploy switches one")
    p.add_argument("--keep", type=positive_int, default=None, metavar="N",
                   help=f"--into: versions kept in DIR, as edgecls deploy --keep (default {KEEP})")
    p.add_argument("--only", action="store_true", help="the taught classes replace the bundle's classes")
    p.add_argument("--name", default=None,
                   help="the new bundle's name (default: the --out folder's name; with --into, the parent's)")
    p.add_argument("--json", action="store_true", help="the result as one JSON line")
    p.set_defaults(func=command)
