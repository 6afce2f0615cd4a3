#!/usr/bin/env bash
# Build an emulated Raspberry Pi OS-like userland for the arm64 test tier, run later through
# `qemu-aarch64-static -L ROOT` (no binfmt_misc, no chroot). RELEASE is the Debian release Raspberry
# Pi OS is based on: bookworm (Debian 12, Python 3.11) or trixie (Debian 13, Python 3.13);
# bookworm-armhf is 32-bit Raspberry Pi OS (run with qemu-arm-static), whose only interpreter is
# tflite-runtime 2.14's armv7l wheel over Debian's armhf numpy and pillow (PyPI has no armv7 numpy,
# pillow or ai-edge-litert).
#
#   tests/tools/arm64_userland.sh RELEASE DIR
#
# DIR/root             the userland: python3 and its libraries from Debian's arm64 .debs, with
#                      Debian's own python3-numpy, python3-pil and python3-venv (what Raspberry Pi OS
#                      ships; the "system-site" install way makes a venv over them)
# DIR/root/proc/cpuinfo.pi4|pi5|zero2
#                      what a Pi 4 / Pi 5 / Pi Zero 2 W shows; qemu-user would show the host's x86
#                      text, on which ai-edge-litert's CPU detection crashes at Interpreter()
# DIR/site-litert      ai-edge-litert + numpy 2 + pillow (aarch64 wheels for the release's Python)
# DIR/site-tflite      tflite-runtime 2.14 + numpy<2 + pillow (bookworm only: no cp313 wheel exists);
#                      on armhf tflite-runtime alone (numpy and pillow are Debian's)
# DIR/wheels-pip       what `pip install edgecls` may fetch on the Pi (ai-edge-litert and its
#                      dependencies, numpy and pillow included): the system-site tests point pip here
# DIR/.done            written last; a finished DIR is reused (the edgecls wheel is installed
#                      separately by the tests, from the checkout)
# Facts this rests on: ../shared/tools/arm64-emulation/README.md.
set -euo pipefail
USAGE="usage: arm64_userland.sh bookworm|trixie|bookworm-armhf DIR"
RELEASE=${1:?$USAGE}
DIR=$(realpath -m "${2:?$USAGE}")
ARCH=arm64 QEMU=qemu-aarch64-static TAG=aarch64
case $RELEASE in
  bookworm) PY=3.11 ;;
  trixie) PY=3.13 ;;
  bookworm-armhf) PY=3.11 ARCH=armhf QEMU=qemu-arm-static TAG=armv7l RELEASE=bookworm ;;
  *) echo "arm64_userland.sh: unknown release $RELEASE; $USAGE" >&2; exit 2 ;;
esac
CP=cp${PY/./}
[ -f "$DIR/.done" ] && exit 0
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
PIP=${PIP:-pip}  # any pip: it only downloads and unpacks aarch64 wheels
t0=$(date +%s)
say() { echo "arm64 [$(( $(date +%s) - t0 ))s] $*"; }

if ! command -v $QEMU >/dev/null; then
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
for suite in "debian $RELEASE" "debian $RELEASE-updates" "debian-security $RELEASE-security"; do
  set -- $suite
  echo "deb [arch=$ARCH signed-by=$KEY] http://deb.debian.org/$1 $2 main"
done > "$APT/sources.list"
# A private apt: one architecture, an empty dpkg status, nothing of the host's package state touched.
APTOPT=(-o "APT::Architecture=$ARCH" -o "APT::Architectures::=$ARCH" -o "Dir::State=$APT"
        -o "Dir::State::Lists=$APT/lists" -o "Dir::State::status=$APT/status" -o "Dir::Cache=$APT"
        -o "Dir::Cache::Archives=$APT/archives" -o "Dir::Etc::SourceList=$APT/sources.list"
        -o "Dir::Etc::SourceParts=$APT/parts" -o "Dir::Etc::Parts=$APT/parts"
        -o "Dir::Etc::PreferencesParts=$APT/prefs" -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
        -o "APT::Install-Recommends=false" -o "Debug::NoLocking=true" -o "Acquire::Languages=none")
say "apt: $ARCH python$PY, python3-numpy, python3-pil, python3-venv and their closure"
for i in 1 2 3; do apt-get "${APTOPT[@]}" -qq update && break; sleep 10; done
apt-get "${APTOPT[@]}" -qq -y install --download-only python$PY-minimal libpython$PY-stdlib libstdc++6 libgcc-s1 \
  python3-numpy python3-pil python3-venv >/dev/null
for deb in "$APT"/archives/*.deb; do dpkg -x "$deb" "$ROOT"; done
for d in bin sbin lib; do  # trixie's merged /usr: base-files' symlinks, not unpacked here
  [ -e "$ROOT/$d" ] || ln -s "usr/$d" "$ROOT/$d"
done
for lib in blas lapack; do  # update-alternatives' links, made by the postinst scripts on a Pi
  for so in "$ROOT"/usr/lib/*-linux-gnu*/$lib/lib$lib.so.3; do
    if [ -e "$so" ]; then ln -sfn "$lib/lib$lib.so.3" "$(dirname "$(dirname "$so")")/lib$lib.so.3"; fi
  done
done
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
if [ $ARCH = armhf ]; then  # a 32-bit userland's view (armv7l) of the same cores
  A72="half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32"
  cpuinfo() { local n; n=$(nproc); for ((i = 0; i < n; i++)); do
    printf 'processor\t: %d\nmodel name\t: ARMv7 Processor rev %s (v7l)\nBogoMIPS\t: 108.00\nFeatures\t: %s\n' "$i" "$4" "$A72"
    printf 'CPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "$2" "$3" "$4"
  done; printf 'Revision\t: %s\nSerial\t\t: 100000000000e1c5\nModel\t\t: %s\n' "$5" "$6"; }
fi
cpuinfo "fp asimd evtstrm crc32 cpuid" 0x0 0xd08 3 c03114 "Raspberry Pi 4 Model B Rev 1.4" > "$ROOT/proc/cpuinfo.pi4"
cpuinfo "fp asimd evtstrm crc32 cpuid" 0x0 0xd03 4 902120 "Raspberry Pi Zero 2 W Rev 1.0" > "$ROOT/proc/cpuinfo.zero2"
cpuinfo "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" \
  0x4 0xd0b 1 d04170 "Raspberry Pi 5 Model B Rev 1.0" > "$ROOT/proc/cpuinfo.pi5"
ln -sfn cpuinfo.pi4 "$ROOT/proc/cpuinfo"
mkdir -p "$ROOT/proc/device-tree"
printf 'Raspberry Pi 4 Model B Rev 1.4\0' > "$ROOT/proc/device-tree/model.pi4"
printf 'Raspberry Pi 5 Model B Rev 1.0\0' > "$ROOT/proc/device-tree/model.pi5"
printf 'Raspberry Pi Zero 2 W Rev 1.0\0' > "$ROOT/proc/device-tree/model.zero2"
ln -sfn model.pi4 "$ROOT/proc/device-tree/model"

# No compileall under emulation (minutes): Python writes each module's .pyc here on its first import.

PIPX=(--only-binary=:all: --python-version $PY --implementation cp --abi $CP --abi abi3 --abi none
      --platform manylinux_2_34_$TAG --platform manylinux_2_28_$TAG --platform manylinux_2_27_$TAG
      --platform manylinux_2_17_$TAG --platform manylinux2014_$TAG -q)
if [ $ARCH = armhf ]; then
  say "wheels for site-tflite: tflite-runtime 2.14 alone (numpy and pillow: Debian's armhf packages)"
  "$PIP" install "${PIPX[@]}" --no-deps --target "$DIR/site-tflite" "tflite-runtime==2.14.0" 2>&1 | { grep -v "^WARNING: Location" || true; }
  rm -rf "$APT"
  date -u +%FT%TZ > "$DIR/.done"
  say "done: $RELEASE-$ARCH, root $(du -sh "$ROOT" | cut -f1), site-tflite $(du -sh "$DIR/site-tflite" | cut -f1)"
  exit 0
fi
SITES=(litert); [ "$RELEASE" = bookworm ] && SITES+=(tflite)
for site in "${SITES[@]}"; do
  case $site in
    litert) pkgs=("ai-edge-litert>=2.0" "numpy>=1.23" "pillow>=9.1") ;;
    tflite) pkgs=("tflite-runtime==2.14.0" "numpy<2" "pillow>=9.1") ;;  # 2.14 is built against numpy 1.x
  esac
  say "wheels for site-$site: ${pkgs[*]}"
  "$PIP" download "${PIPX[@]}" -d "$DIR/wheels-$site" "${pkgs[@]}" 2>&1 | { grep -v "^WARNING: Location" || true; }
  "$PIP" install "${PIPX[@]}" --no-index --find-links "$DIR/wheels-$site" --target "$DIR/site-$site" "${pkgs[@]}" 2>&1 | { grep -v "^WARNING: Location" || true; }
done
say "wheels for the system-site venv's pip: ai-edge-litert and its dependencies"
# What PyPI offers a Pi: the newest releases, and those that go with Debian's own numpy and pillow.
version() {  # of a Debian python3-* package: its dist-info METADATA or egg-info PKG-INFO
  { cat "$ROOT"/usr/lib/python3/dist-packages/$1-*-info/{METADATA,PKG-INFO} 2>/dev/null || true; } | sed -n 's/^Version: //p' | head -1
}
SYSTEM=("numpy==$(version numpy)" "pillow==$(version [Pp]illow)")
say "system numpy and pillow: ${SYSTEM[*]}"
for pins in "numpy>=1.23 pillow>=9.1" "${SYSTEM[*]}"; do
  "$PIP" download "${PIPX[@]}" -d "$DIR/wheels-pip" "ai-edge-litert>=2.0" $pins 2>&1 | { grep -v "^WARNING: Location" || true; }
done
rm -rf "$APT"
date -u +%FT%TZ > "$DIR/.done"
say "done: $RELEASE, root $(du -sh "$ROOT" | cut -f1), $(du -sh "$DIR"/site-* | tr '\n\t' ', ')"
