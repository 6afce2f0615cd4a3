#!/bin/sh
# Stands in for a slow device in the fault tests: linked as tar, sha256sum and mv on the PATH of one
# sshd. It notes the deploy stage it is, sleeps there when the test left $EDGECLS_FAULT_DIR/slow-STAGE
# (so that the test can kill the deploy or its connection in the middle of it), then runs the real tool.
name=$(basename "$0")
case "$name $*" in
  tar*) stage=upload ;;
  sha256sum*) stage=unpack ;;
  mv*current.new*) stage=switch ;;
  *) stage=$name ;;
esac
echo "$stage" >> "$EDGECLS_FAULT_DIR/stages"
if [ -f "$EDGECLS_FAULT_DIR/slow-$stage" ]; then sleep "${EDGECLS_FAULT_SLEEP:-3}"; fi
for d in /usr/bin /bin; do [ -x "$d/$name" ] && exec "$d/$name" "$@"; done
echo "slow_tool: no $name" >&2; exit 127
