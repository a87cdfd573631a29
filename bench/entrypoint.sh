#!/bin/sh
# A minimal shell entrypoint, written for the benchmark only. It does the steps of
# `supervisor run` with no checks beyond `set -e`. It initializes the store on first start,
# mounts it, gives its root to the broker user, renders the template and runs the broker.
# On SIGTERM it stops the broker and unmounts. It reads the supervisor's variables, so one
# environment drives both.
set -eu

cipherdir=$SUPERVISOR_CIPHERDIR
mountpoint=$SUPERVISOR_MOUNTPOINT
passfile=$SUPERVISOR_PASSFILE
config=$SUPERVISOR_CONFIG

if [ ! -e "$cipherdir/gocryptfs.conf" ]; then
    mkdir -p "$cipherdir"
    gocryptfs -init -q -passfile "$passfile" -- "$cipherdir"
fi
mkdir -p "$mountpoint"
# Without -fg, gocryptfs forks a daemon and returns once the mount is ready.
gocryptfs -q -nosyslog -allow_other -passfile "$passfile" -- "$cipherdir" "$mountpoint"
chown mosquitto:mosquitto "$mountpoint"
chmod 700 "$mountpoint"

# Render the template: drop the comment lines (their backquotes would run as commands), then
# let the shell expand ${NAME}, ${NAME:-default} and ${NAME:+text} in a here-document.
export SUPERVISOR_BROKER_USER=mosquitto
export SUPERVISOR_ALLOW_ANONYMOUS=true
template=$(sed '/^[[:space:]]*#/d' "$SUPERVISOR_TEMPLATE")
eval "cat > \"\$config\" <<EOF
$template
EOF"

mosquitto -c "$config" &
broker=$!
trap 'kill -TERM "$broker" 2>/dev/null || true' TERM INT

set +e
wait "$broker"
status=$?
# A trapped signal ends the first wait early; wait again for the broker to finish saving.
if kill -0 "$broker" 2>/dev/null; then
    wait "$broker"
    status=$?
fi
fusermount3 -u -- "$mountpoint"
exit "$status"
