#!/usr/bin/env python3
"""Stands in for Coral's edgetpu_compiler (x86-64 Linux only, from Coral's apt repository; it
cannot be installed here) to test what edgecls does around it: the command line it is given,
its output file, and its log, which is a real one quoted from a public issue
(tests/data/edgetpu_logs/). FAKE_EDGETPU_LOG picks the log; FAKE_EDGETPU_EXIT the exit status.
The "compiled" model is a copy of the input (no Edge TPU op inside)."""

import os
import shutil
import sys
from pathlib import Path

args = sys.argv[1:]
out_dir = Path(args[args.index("--out_dir") + 1]) if "--out_dir" in args else Path.cwd()
model = Path(args[-1])
assert "--show_operations" in args and model.suffix == ".tflite", args
log = Path(os.environ["FAKE_EDGETPU_LOG"]).read_text().splitlines()
print("\n".join(line for line in log if not line.startswith("# source:")))
code = int(os.environ.get("FAKE_EDGETPU_EXIT", "0"))
if code == 0:
    shutil.copyfile(model, out_dir / f"{model.stem}_edgetpu.tflite")
sys.exit(code)
