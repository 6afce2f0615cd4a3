"""Byte-flip a .tflite and load and run each variant as ``edgecls classify`` would, in this one
process: prints ``SEED ok`` or ``SEED err`` per variant; any other exception is printed as
``SEED EXC ...``, and a crash kills the process (the caller sees the last seed it printed).
usage: fuzz_models.py MODEL IMAGE FIRST_SEED COUNT WORK_DIR"""

import os
import random
import sys

from edge_runtime import Classifier
from edge_runtime.errors import EdgeclsError


def variant(src: bytes, seed: int) -> bytes:
    """1-16 bytes changed, weighted to the flatbuffer's tables at both ends (most of the middle
    is weights, where a flip changes scores, not structure)."""
    r = random.Random(seed)
    data = bytearray(src)
    for _ in range(r.randint(1, 16)):
        pos = r.choice([r.randrange(min(8192, len(data))), len(data) - 1 - r.randrange(min(8192, len(data))),
                        r.randrange(len(data))])
        data[pos] = r.randrange(256)
    return bytes(data)


def main(model: str, image: str, first: int, count: int, work: str) -> None:
    src = open(model, "rb").read()
    for seed in range(first, first + count):
        path = os.path.join(work, f"flip-{seed}.tflite")
        with open(path, "wb") as f:
            f.write(variant(src, seed))
        print(seed, end=" ", flush=True)
        try:
            with Classifier(path, backend="cpu", threads=1) as clf:
                clf.classify(image)
            print("ok", flush=True)
        except EdgeclsError:
            print("err", flush=True)
        except Exception as e:  # noqa: BLE001 (what the test is looking for)
            print("EXC", type(e).__name__, str(e)[:200].replace("\n", " "), flush=True)
        os.unlink(path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
