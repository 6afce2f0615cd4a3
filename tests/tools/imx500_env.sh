#!/usr/bin/env bash
# Build the isolated IMX500 converter environment used by `edgecls convert --imx500`: Sony's
# imx500-converter (imxconv-tf) and Model Compression Toolkit 2.5.1 on TensorFlow 2.15 / Keras 2 /
# numpy 1.26, apart from the main venv (TensorFlow 2.21 / Keras 3). Needs Java 17 for imxconv-tf.
#
#   tests/tools/imx500_env.sh DIR
#
# DIR/venv         the environment (DIR/venv/bin/python, DIR/venv/bin/imxconv-tf)
# DIR/.done        written last; a finished DIR is reused (about 2.3 GB, 70 s from PyPI)
# MCT 2.6 cannot share a venv with the converter (it needs mct-quantizers 1.7, the converter pins
# 1.6), so MCT stays at 2.5.1.
set -euo pipefail
DIR=$(realpath -m "${1:?usage: imx500_env.sh DIR}")
[ -f "$DIR/.done" ] && exit 0
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
PY=${PYTHON:-python3}  # 3.9 to 3.11: TensorFlow 2.15 has no wheel for newer Pythons
t0=$(date +%s)
say() { echo "imx500 [$(( $(date +%s) - t0 ))s] $*"; }

if ! command -v java >/dev/null || ! java -version 2>&1 | grep -q 'version "17'; then
  echo "imx500_env.sh: imxconv-tf needs Java 17: apt-get install openjdk-17-jre-headless" >&2
  exit 1
fi
rm -rf "$DIR"
mkdir -p "$DIR"
say "venv ($("$PY" --version))"
"$PY" -m venv "$DIR/venv"
"$DIR/venv/bin/python" -m pip install -q --upgrade pip
say "pip install imx500-converter[tf] model-compression-toolkit==2.5.1"
"$DIR/venv/bin/python" -m pip install -q "imx500-converter[tf]==3.19.2" "model-compression-toolkit==2.5.1"
"$DIR/venv/bin/python" - <<'PY'
import importlib.metadata as md
for name in ("tensorflow", "keras", "numpy", "model-compression-toolkit", "imx500-converter"):
    print(f"  {name} {md.version(name)}")
PY
"$DIR/venv/bin/imxconv-tf" --help >/dev/null
say "done"
touch "$DIR/.done"
