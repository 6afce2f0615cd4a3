#!/bin/bash
# Mesa 25 lavapipe (software Vulkan) from bookworm-backports, unpacked into a private folder so
# LiteRT's GPU accelerator can run in CI without a GPU. Debian 12's own Mesa 22 is rejected
# by Dawn. Prints the environment to use. Needs the Vulkan loader (Debian's libvulkan1).
# usage: tests/tools/lavapipe.sh DEST   (idempotent: does nothing when DEST is complete)
set -euo pipefail
DEST=$(mkdir -p "${1:?usage: lavapipe.sh DEST}" && cd "$1" && pwd)
ICD=$DEST/lvp_icd.json
if [ ! -f "$ICD" ]; then
  A=$DEST/apt; rm -rf "$A"; mkdir -p "$A/lists/partial" "$A/archives/partial" "$A/parts"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-backports main" > "$A/sources.list"
  O=(-o Dir::Etc::SourceList="$A/sources.list" -o Dir::Etc::SourceParts="$A/parts"
     -o Dir::State::Lists="$A/lists" -o Dir::Cache::Archives="$A/archives" -o Debug::NoLocking=1 -qq)
  apt-get "${O[@]}" update
  (cd "$A" && apt-get "${O[@]}" download mesa-vulkan-drivers/bookworm-backports libdrm2/bookworm-backports)
  for d in "$A"/*.deb; do dpkg -x "$d" "$DEST/root"; done
  LIB=$DEST/root/usr/lib/x86_64-linux-gnu
  SRC=$(ls "$DEST"/root/usr/share/vulkan/icd.d/lvp_icd*.json | head -1)
  sed "s#\"library_path\": *\"[^\"]*\"#\"library_path\": \"$LIB/libvulkan_lvp.so\"#" "$SRC" > "$ICD.tmp"
  mv "$ICD.tmp" "$ICD"
  rm -rf "$A"
fi
echo "VK_DRIVER_FILES=$ICD"
echo "LD_LIBRARY_PATH=$DEST/root/usr/lib/x86_64-linux-gnu"
