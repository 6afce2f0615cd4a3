"""Does the drift score (edge_runtime/live/drift.py) separate in-distribution frames from shifted
ones within 200 frames? Issue 35's goal, on two bundles:

- the sign-language bundle (`edgecls convert` of the sign run: its reference is the int8 model on
  the held-out test split): streams of its held-out photos, of its training photos, and of the
  held-out photos darkened to 30%, blurred (Gaussian, radius 4), and another data set's photos
  (Coral's three, random crops);
- Coral's MobileNet V2 with a reference of 36 random crops of its three photos (what `adopt
  --photos` records): new crops, the same darkened and blurred, and the sign photos.

Each stream is 200 frames in random order through the runtime's own path (prepare, infer,
scores) into a ``Drift`` with the camera's defaults; the score is read after 50, 100 and 200
frames, and the first frame at which it is above --drift-warn 0.25 is noted.

usage: python benchmarks/drift_separation.py --sign-bundle BUNDLE [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from edge_runtime import Classifier, __version__, load_bundle
from edge_runtime.bundle.reference import Reference
from edge_runtime.cli.doctor import cpu_model
from edge_runtime.live.drift import DRIFT_WARN, Drift

ROOT = Path(__file__).resolve().parents[1]
CORAL = ROOT.parent / "shared" / "assets" / "coral"
V2 = "mobilenet_v2_1.0_224_quant"
FRAMES = 200
CHECKS = (50, 100, 200)


def crops(n: int, seed: int) -> list[Image.Image]:
    rng = random.Random(seed)
    out = []
    for name in ("cat.bmp", "parrot.jpg", "bird.bmp"):
        im = Image.open(CORAL / name).convert("RGB")
        w, h = im.size
        for _ in range(n):
            s = rng.uniform(0.7, 1.0)
            cw, ch = int(w * s), int(h * s)
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            out.append(im.crop((x, y, x + cw, y + ch)))
    return out


def dark(im: Image.Image) -> Image.Image:
    return ImageEnhance.Brightness(im).enhance(0.3)


def blur(im: Image.Image) -> Image.Image:
    return im.filter(ImageFilter.GaussianBlur(4))


def stream(clf: Classifier, reference: Reference, photos: list, shift=None, seed: int = 0) -> dict:
    """The drift after CHECKS frames drawn from all of ``photos`` (paths or images) in random order."""
    rng = random.Random(seed)
    order: list = []
    while len(order) < FRAMES:  # every photo once in random order, then again: no class runs first
        order += rng.sample(photos, len(photos))
    order = order[:FRAMES]
    d = Drift(reference)
    out: dict = {"photos": len(photos), "first_above_warn": None}
    for n, p in enumerate(order, 1):
        im = Image.open(p).convert("RGB") if isinstance(p, (str, Path)) else p
        im = shift(im) if shift else im
        d.observe(clf.scores(clf.infer(clf.prepare(np.asarray(im)))))
        s = d.score()
        if s is not None and s.score > DRIFT_WARN and out["first_above_warn"] is None:
            out["first_above_warn"] = n
        if n in CHECKS:
            out[f"at_{n}"] = round(s.score, 3) if s else None
            if n == FRAMES:
                out["label_shift"] = round(s.label_shift, 3) if s else None
    return out


def sign_cases(bundle_path: Path) -> tuple[dict, dict]:
    b = load_bundle(bundle_path)
    ref = Reference.from_json(b.meta["reference"], str(bundle_path), len(b.labels))
    src = b.meta["source"]
    run, data = Path(src["run"]), Path(src["dataset"])
    test = [data / r for r in (run / "splits" / "test.txt").read_text().split("\n") if r]
    train = [data / r for r in (run / "splits" / "train.txt").read_text().split("\n") if r]
    with Classifier(bundle_path, backend="cpu") as clf:
        cases = {"held-out photos (the reference's own)": stream(clf, ref, test),
                 "training photos": stream(clf, ref, train),
                 "held-out, darkened to 30%": stream(clf, ref, test, dark),
                 "held-out, blurred (radius 4)": stream(clf, ref, test, blur),
                 "another data set (Coral's photos)": stream(clf, ref, crops(20, 5))}
    return cases, {"bundle": b.name, "reference_photos": ref.photos, "classes": len(b.labels)}


def coral_cases() -> tuple[dict, dict]:
    with Classifier(CORAL / f"{V2}.tflite", labels=CORAL / "imagenet_labels.txt", backend="cpu",
                    resize="bilinear-legacy") as clf:
        ref = Reference.from_scores(np.stack([clf.scores(clf.infer(clf.prepare(np.asarray(im))))
                                              for im in crops(12, 0)]))
        sign = sorted(p for p in (ROOT.parent / "shared" / "assets" / "datasets" / "sign_language_digits").rglob("*")
                      if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[::5]
        cases = {"new crops of the same photos": stream(clf, ref, crops(20, 1)),
                 "crops, darkened to 30%": stream(clf, ref, crops(20, 1), dark),
                 "crops, blurred (radius 4)": stream(clf, ref, crops(20, 1), blur),
                 "another data set (sign-language photos)": stream(clf, ref, sign)}
    return cases, {"bundle": V2, "reference_photos": ref.photos, "classes": 1001}


def table(title: str, cases: dict, about: dict) -> list[str]:
    rows = [f"## {title}", "", f"{about['bundle']}, {about['classes']} classes; reference: "
            f"{about['reference_photos']} photos.", "",
            "| stream | drift at 50 | at 100 | at 200 | first frame above 0.25 | label shift at 200 |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name, c in cases.items():
        rows.append(f"| {name} | {c['at_50']} | {c['at_100']} | {c['at_200']} | {c['first_above_warn'] or '-'} | "
                    f"{c['label_shift']} |")
    return rows + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sign-bundle", type=Path, help="a bundle written by this edgecls's convert of the sign run")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    a = ap.parse_args()
    results = {}
    md = ["# Drift: in-distribution frames against shifted ones", "",
          f"{cpu_model()} ({platform.machine()}), edgecls {__version__}. Each stream is {FRAMES} frames in random "
          "order (photos repeated as needed), through the runtime's path into `Drift` with the camera's defaults "
          f"(window 200, no score before 50 frames); --drift-warn {DRIFT_WARN}. Produced by "
          "`python benchmarks/drift_separation.py --sign-bundle BUNDLE`.", ""]
    if a.sign_bundle:
        cases, about = sign_cases(a.sign_bundle)
        results["sign"] = {**about, "cases": cases}
        md += table("The sign-language bundle", cases, about)
    cases, about = coral_cases()
    results["coral_v2"] = {**about, "cases": cases}
    md += table("Coral's MobileNet V2", cases, about)
    md += ["What it shows: a stream is flagged when it moves the model's outputs. Blur and another data set do, "
           "on both bundles, from the first judged frame (50). Where the model keeps its labels and its confidence, "
           "there is nothing for an output-based statistic to see: the sign model classifies its photos darkened to "
           "30% as it does the originals (see the label shift), so that stream stays below 0.25 - correctly, as far "
           "as the model's answers go, but a camera that goes dark without moving the scores is not caught by drift "
           "(watch `edgecls_top_score` and the picture for that).", ""]
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "drift_separation.json").write_text(json.dumps(results, indent=2) + "\n")
    (a.out / "drift_separation.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
