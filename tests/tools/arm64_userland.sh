#!/usr/bin/env bash
# Build an emulated Raspberry Pi OS-like arm64 userland (Debian 12 bookworm, Python 3.11) for the
# arm64 test tier, run later through `qemu-aarch64-static -L ROOT` (no binfmt_misc, no chroot).
#
#   tests/tools/arm64_userland.sh DIR
#
# DIR/root             the userland: python3.11 and its libraries from Debian's arm64 .debs
# DIR/root/proc/cpuinfo.pi4|pi5
#                      what a Pi 4 / Pi 5 shows; qemu-user would show the host's x86 text, on
#                      which ai-edge-litert's CPU detection crashes at Interpreter()
# DIR/site-litert      ai-edge-litert + numpy 2 + pillow (aarch64 cp311 wheels)
# DIR/site-tflite      tflite-runtime 2.14 + numpy<2 + pillow
# DIR/.done            written last; a finished DIR is reused (the edgecls wheel is installed
#                      separately by the tests, from the checkout)
# Facts this rests on: ../shared/tools/arm64-emulation/README.md.
set -euo pipefail
DIR=$(realpath -m "${1:?usage: arm64_userland.sh DIR}")
[ -f "$DIR/.done" ] && exit 0
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
PIP=${PIP:-pip}  # any pip: it only downloads and unpacks aarch64 wheels
t0=$(date +%s)
say() { echo "arm64 [$(( $(date +%s) - t0 ))s] $*"; }

if ! command -v qemu-aarch64-static >/dev/null; then
  say "installing qemu-user-static"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null
fi
rm -rf "$DIR"
mkdir -p "$DIR"
APT=$DIR/apt
ROOT=$DIR/root
mkdir -p "$APT"/{lists/partial,archives/partial,parts,prefs} "$ROOT"
: > "$APT/status"
KEY=/usr/share/keyrings/debian-archive-keyring.gpg
for suite in "debian bookworm" "debian bookworm-updates" "debian-security bookworm-security"; do
  set -- $suite
  echo "deb [arch=arm64 signed-by=$KEY] http://deb.debian.org/$1 $2 main"
done > "$APT/sources.list"
# A private apt: arm64 only, an empty dpkg status, nothing of the host's package state touched.
APTOPT=(-o "APT::Architecture=arm64" -o "APT::Architectures::=arm64" -o "Dir::State=$APT"
        -o "Dir::State::Lists=$APT/lists" -o "Dir::State::status=$APT/status" -o "Dir::Cache=$APT"
        -o "Dir::Cache::Archives=$APT/archives" -o "Dir::Etc::SourceList=$APT/sources.list"
        -o "Dir::Etc::SourceParts=$APT/parts" -o "Dir::Etc::Parts=$APT/parts"
        -o "Dir::Etc::PreferencesParts=$APT/prefs" -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
        -o "APT::Install-Recommends=false" -o "Debug::NoLocking=true" -o "Acquire::Languages=none")
say "apt: arm64 python3.11 and its closure"
for i in 1 2 3; do apt-get "${APTOPT[@]}" -qq update && break; sleep 10; done
apt-get "${APTOPT[@]}" -qq -y install --download-only python3.11-minimal libpython3.11-stdlib libstdc++6 libgcc-s1 >/dev/null
for deb in "$APT"/archives/*.deb; do dpkg -x "$deb" "$ROOT"; done
say "$(ls "$APT"/archives/*.deb | wc -l) debs unpacked"

mkdir -p "$ROOT/proc"
cpuinfo() {  # features, variant, part, revision, board revision, model
  local n; n=$(nproc)
  for ((i = 0; i < n; i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\n' "$i" "$1"
    printf 'CPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "$2" "$3" "$4"
  done
  printf 'Revision\t: %s\nSerial\t\t: 100000000000e1c5\nModel\t\t: %s\n' "$5" "$6"
}
cpuinfo "fp asimd evtstrm crc32 cpuid" 0x0 0xd08 3 c03114 "Raspberry Pi 4 Model B Rev 1.4" > "$ROOT/proc/cpuinfo.pi4"
cpuinfo "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" \
  0x4 0xd0b 1 d04170 "Raspberry Pi 5 Model B Rev 1.0" > "$ROOT/proc/cpuinfo.pi5"
ln -sfn cpuinfo.pi4 "$ROOT/proc/cpuinfo"
mkdir -p "$ROOT/proc/device-tree"
printf 'Raspberry Pi 4 Model B Rev 1.4\0' > "$ROOT/proc/device-tree/model.pi4"
printf 'Raspberry Pi 5 Model B Rev 1.0\0' > "$ROOT/proc/device-tree/model.pi5"
ln -sfn model.pi4 "$ROOT/proc/device-tree/model"

say "precompiling the standard library under emulation"
qemu-aarch64-static -L "$ROOT" "$ROOT/usr/bin/python3.11" -m compileall -q -j0 "$ROOT/usr/lib/python3.11" >/dev/null || true

PIPX=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none
      --platform manylinux_2_34_aarch64 --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64
      --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 -q)
for site in litert tflite; do
  case $site in
    litert) pkgs=("ai-edge-litert>=2.0" "numpy>=1.23" "pillow>=9.1") ;;
    tflite) pkgs=("tflite-runtime==2.14.0" "numpy<2" "pillow>=9.1") ;;  # 2.14 is built against numpy 1.x
  esac
  say "wheels for site-$site: ${pkgs[*]}"
  "$PIP" download "${PIPX[@]}" -d "$DIR/wheels-$site" "${pkgs[@]}" 2>&1 | { grep -v "^WARNING: Location" || true; }
  "$PIP" install "${PIPX[@]}" --no-index --find-links "$DIR/wheels-$site" --target "$DIR/site-$site" "${pkgs[@]}" 2>&1 | { grep -v "^WARNING: Location" || true; }
done
rm -rf "$APT"
date -u +%FT%TZ > "$DIR/.done"
say "done: root $(du -sh "$ROOT" | cut -f1), site-litert $(du -sh "$DIR/site-litert" | cut -f1), site-tflite $(du -sh "$DIR/site-tflite" | cut -f1)"
