"""The device side of a deploy: small POSIX shell programs run through one ssh connection each,
with every value passed as a positional argument (never pasted into the program), and the
device's directory locked with flock(1) for the whole operation.

Layout on the device, under DIR:
    versions/<id>/            one directory per deployed bundle
    versions/.incoming-<id>/  an upload in progress (removed by the next operation under the lock)
    current -> versions/<id>  switched by rename(2), so it always names a complete, verified version
    history                   the ids in the order they went live
    .lock                     flock'd by every operation that changes anything
"""

from __future__ import annotations

# Shared prologue: $1 = DIR. Takes the lock or exits 75 (EX_TEMPFAIL) when another deploy holds it.
_PROLOGUE = r'''
set -eu
dir=$1; shift
mkdir -p -- "$dir/versions"
exec 9>>"$dir/.lock"
if ! flock -n 9; then echo "edgecls-remote: $dir is locked by another deploy" >&2; exit 75; fi
switch() {  # $1 = id: point current at versions/$1, atomically
  ln -sfn -- "versions/$1" "$dir/.current.new"
  mv -fT -- "$dir/.current.new" "$dir/current"
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
restart_service() {  # the unit named in $dir/service (edgecls deploy --service), if any
  if [ -f "$dir/service" ]; then
    unit=$(cat "$dir/service")
    as_root systemctl restart "$unit" || { echo "edgecls-remote: systemctl restart $unit failed" >&2; exit 3; }
    sleep "${EDGECLS_SERVICE_SETTLE:-2}"
    as_root systemctl is-active --quiet "$unit" \
      || { echo "edgecls-remote: service $unit is not running after the restart (journalctl -u $unit)" >&2; exit 3; }
  fi
}
'''

# $1 DIR, $2 id, $3 keep, $4 verify command ("" = none), $5 restart the service: yes|no (no when
# SERVICE runs next) ; stdin = a tar stream of the bundle's files
UPLOAD = _PROLOGUE + r'''
id=$1; keep=$2; verify=$3; restart=$4
rm -rf -- "$dir"/versions/.incoming-*
inc="$dir/versions/.incoming-$id"
mkdir -- "$inc"
tar -x -f - -C "$inc"
[ -f "$inc/SHA256SUMS" ] || { echo "edgecls-remote: upload incomplete (no SHA256SUMS)" >&2; exit 4; }
(cd "$inc" && sha256sum --quiet --strict -c SHA256SUMS) >&2 || { echo "edgecls-remote: sha256 mismatch on the device" >&2; exit 5; }
rm -f -- "$inc/SHA256SUMS"
if [ -f "$inc/imx500/packerOut.zip" ]; then
  # The AI Camera loads network.rpk, which Raspberry Pi OS's imx500-package makes from the converter's output.
  if command -v imx500-package >/dev/null 2>&1; then
    imx500-package -i "$inc/imx500/packerOut.zip" -o "$inc/imx500" >&2 && [ -f "$inc/imx500/network.rpk" ] \
      || { echo "edgecls-remote: imx500-package failed on packerOut.zip" >&2; rm -rf -- "$inc"; exit 7; }
  else
    echo "edgecls-remote: note: imx500-package is not installed (sudo apt install imx500-tools); the AI Camera network was not packaged - the CPU model is live" >&2
  fi
fi
if [ -n "$verify" ]; then
  # The runtime on the device reruns the golden photos before anything goes live.
  if ! sh -c "$verify \"\$1\"" verify "$inc" >&2; then
    echo "edgecls-remote: edgecls verify failed on the device; the live version is unchanged" >&2
    rm -rf -- "$inc"; exit 6
  fi
fi
rm -rf -- "$dir/versions/$id"
mv -- "$inc" "$dir/versions/$id"
switch "$id"
echo "$id" >> "$dir/history"
[ "$restart" = no ] || restart_service
# keep the newest $keep versions that went live, and the live one
if [ "$keep" -gt 0 ]; then
  tac "$dir/history" | awk '!seen[$0]++' | tail -n +$((keep + 1)) | while IFS= read -r old; do
    [ "$old" = "$id" ] || rm -rf -- "$dir/versions/$old"
  done
fi
echo "live $id"
'''

# $1 DIR
ROLLBACK = _PROLOGUE + r'''
[ -L "$dir/current" ] || { echo "edgecls-remote: nothing deployed in $dir" >&2; exit 4; }
now=$(basename "$(readlink "$dir/current")")
prev=$(tac "$dir/history" | awk -v now="$now" '$0 != now' | while IFS= read -r v; do
  [ -d "$dir/versions/$v" ] && { echo "$v"; break; }; done)
[ -n "$prev" ] || { echo "edgecls-remote: no earlier version left in $dir to roll back to" >&2; exit 4; }
switch "$prev"
echo "$prev" >> "$dir/history"
restart_service
echo "live $prev (was $now)"
'''

# $1 DIR: the live version once no deploy holds the lock (what a cut deploy's script did, once it ended)
LIVE_AFTER = r'''
set -eu
cd -- "$1" 2>/dev/null || exit 0
exec 9>>.lock
flock -w 60 9 || true
[ -L current ] && basename "$(readlink current)" || true
'''

# $1 DIR (no lock: reads only)
STATUS = r'''
set -eu
dir=$1
cur=""
[ -L "$dir/current" ] && cur=$(basename "$(readlink "$dir/current")")
echo "current ${cur:--}"
if [ -d "$dir/versions" ]; then
  for v in "$dir"/versions/*; do [ -d "$v" ] && echo "version $(basename "$v")"; done
  for v in "$dir"/versions/.incoming-*; do [ -d "$v" ] && echo "incomplete $(basename "$v")"; done
fi
[ -f "$dir/history" ] && sed 's/^/history /' "$dir/history"
exit 0
'''

# $1 DIR ; stdin = a tar of wheels (edgecls and its dependencies, for this device's Python)
INSTALL = _PROLOGUE + r'''
py=$(command -v python3) || { echo "edgecls-remote: no python3 on the device" >&2; exit 4; }
rm -rf -- "$dir/.wheels.new"
mkdir -- "$dir/.wheels.new"
tar -x -f - -C "$dir/.wheels.new"
rm -rf -- "$dir/wheels"
mv -- "$dir/.wheels.new" "$dir/wheels"
if [ ! -x "$dir/venv/bin/python" ]; then
  # system site-packages: Raspberry Pi OS's python3-picamera2 stays visible
  "$py" -m venv --system-site-packages "$dir/venv" >&2 \
    || { echo "edgecls-remote: cannot make a venv; install python3-venv" >&2; exit 4; }
fi
"$dir/venv/bin/python" -m pip install -q --no-index --find-links "$dir/wheels" --upgrade edgecls >&2 \
  || { echo "edgecls-remote: pip could not install the runtime from the wheels sent" >&2; exit 4; }
echo "installed $("$dir/venv/bin/edgecls" --version)"
'''

PROBE_PYTHON = r'''
command -v python3 >/dev/null 2>&1 || { echo "none"; exit 0; }
python3 -c 'import platform, sys; print("%d.%d" % sys.version_info[:2], platform.machine())'
'''

# $1 DIR, $2 unit name, $3 unit file text: install or update the unit, enable it, (re)start it, check it runs
SERVICE = _PROLOGUE + r'''
unit=$1; text=$2
units=${EDGECLS_UNIT_DIR:-/etc/systemd/system}
printf '%s\n' "$text" | as_root tee "$units/$unit" >/dev/null \
  || { echo "edgecls-remote: cannot write $units/$unit (needs root or passwordless sudo)" >&2; exit 4; }
as_root systemctl daemon-reload
as_root systemctl enable "$unit" >/dev/null 2>&1 || true
printf '%s\n' "$unit" > "$dir/service"
restart_service
echo "service $unit running"
'''
