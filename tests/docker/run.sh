#!/usr/bin/env bash
# Engine test of the image and the compose deployment on a real Docker daemon.
#
# It starts a private dockerd with its own socket, pidfile and exec root, and a data root under
# /var/tmp. It imports a debootstrapped debian:bookworm-slim, builds the supervisor on the host and
# the image on its prebuilt path. Then it runs compose projects in temporary directories with
# docker-compose.ci.yml: host networking, broker on free ports of 127.0.0.1 only.
# Needs root and the Debian packages docker.io, docker-compose, debootstrap, mosquitto-clients,
# plus the Swift toolchain. Without a usable engine it prints why and exits 0 (skipped), or fails
# when CI is set. Prints `N passed, M failed` last and exits non-zero when a check failed.
#
# Environment: DOCKER_TEST_DATA_ROOT (dockerd data root, reused between runs), BASE_TARBALL
# (cached root filesystem), SWIFT_SCRATCH (swift build --scratch-path), DEBIAN_MIRROR, and
# SUPERVISOR_PREBUILT with SUPERVISOR_PREBUILT_PLUGIN (a supervisor binary and a journal plugin to
# put in the image instead of building them).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=tests/docker/lib.sh
source "$here/lib.sh"
# shellcheck source=tests/docker/image.sh
source "$here/image.sh"
# shellcheck source=tests/docker/scenarios.sh
source "$here/scenarios.sh"
# shellcheck source=tests/docker/migration.sh
source "$here/migration.sh"
# shellcheck source=tests/docker/journal.sh
source "$here/journal.sh"

data_root=${DOCKER_TEST_DATA_ROOT:-/var/tmp/mosquitto-supervisor-docker}
base_tarball=${BASE_TARBALL:-/var/tmp/mosquitto-supervisor-bookworm-slim.tar}
swift_scratch=${SWIFT_SCRATCH:-/var/tmp/docker-swift-build}
image=mosquitto-supervisor:engine-test
# The docker.io client, because it builds with the daemon's BuildKit when DOCKER_BUILDKIT=1. A
# newer client without the buildx plugin rejects DOCKER_BUILDKIT=1.
DOCKER=${DOCKER:-/usr/bin/docker}
run_started=$SECONDS

# --- prerequisites -----------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || skip_or_fail "must run as root to start dockerd"
for tool in dockerd "$DOCKER" docker-compose debootstrap mosquitto_pub mosquitto_sub; do
    command -v "$tool" >/dev/null || skip_or_fail "$tool not found; install docker.io docker-compose debootstrap mosquitto-clients"
done
if { [ -z "${SUPERVISOR_PREBUILT:-}" ] || [ -z "${SUPERVISOR_PREBUILT_PLUGIN:-}" ]; } && ! command -v swift >/dev/null; then
    skip_or_fail "swift not found; put the Swift toolchain on PATH or set SUPERVISOR_PREBUILT and SUPERVISOR_PREBUILT_PLUGIN"
fi
[ -c /dev/fuse ] || skip_or_fail "/dev/fuse is missing on this host"

state=$(mktemp -d /var/tmp/msd.XXXXXX)
projects=()
dockerd_pid=

cleanup() {
    local status=$?
    set +e
    for project in "${projects[@]}"; do
        compose_in "$project" down --volumes --timeout 40 >>"$state/cleanup.log" 2>&1
    done
    if [ -n "$dockerd_pid" ]; then
        "$DOCKER" image prune --force >>"$state/cleanup.log" 2>&1
        stop_dockerd
    fi
    if [ "$failed" -eq 0 ] && [ "$status" -eq 0 ]; then
        rm -rf "$state"
    else
        echo "docker-test: kept $state (dockerd.log, project directories) for inspection"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- supervisor binary, daemon, base image, image ----------------------------------------------
binary=${SUPERVISOR_PREBUILT:-}
plugin=${SUPERVISOR_PREBUILT_PLUGIN:-}
if [ -n "$binary" ] && [ -n "$plugin" ]; then
    say "using the supervisor binary $binary and the journal plugin $plugin"
else
    say "building the supervisor and the journal plugin on the host (scratch path $swift_scratch)"
    # The same swift build commands as the Dockerfile's "source" stage.
    if ! (cd "$repo" && swift build -c release --static-swift-stdlib --product supervisor \
            --scratch-path "$swift_scratch" \
            && swift build -c release --product mosquitto_journal --scratch-path "$swift_scratch") \
            >"$state/swift-build.log" 2>&1; then
        tail -n 30 "$state/swift-build.log"
        fail "host build of the supervisor and the journal plugin" "swift build failed; see above"
        echo "$passed passed, $failed failed"
        exit 1
    fi
    binary="$swift_scratch/release/supervisor"
    plugin="$swift_scratch/release/libmosquitto_journal.so"
fi

# Two daemons must never share a data root, so a second run waits here for the first.
exec 8>"$data_root.lock"
if ! flock -w 1200 8; then
    skip_or_fail "another run has held $data_root.lock for 20 minutes"
fi
say "starting dockerd (data root $data_root)"
if ! start_dockerd "$state" "$data_root"; then
    tail -n 20 "$state/dockerd.log"
    skip_or_fail "dockerd did not start; its log is above"
fi
say "dockerd runs as pid $dockerd_pid on $DOCKER_HOST"

if ! ensure_base_image "$base_tarball"; then
    fail "base image debian:bookworm-slim" "debootstrap or docker import failed"
    echo "$passed passed, $failed failed"
    exit 1
fi

# The build context: what the Dockerfile copies, plus the host-built binary.
context="$state/context"
mkdir -p "$context"
tar -C "$repo" -cf - Dockerfile .dockerignore Package.swift Sources Tests mosquitto.conf.template config \
    | tar -C "$context" -xf -
install -D -m 0755 "$binary" "$context/prebuilt/supervisor"
install -D -m 0644 "$plugin" "$context/prebuilt/libmosquitto_journal.so"
say "building $image on the prebuilt path"
build_started=$SECONDS
if DOCKER_BUILDKIT=1 "$DOCKER" build --network host --build-arg SUPERVISOR_BINARY=prebuilt \
        -t "$image" "$context" >"$state/image-build.log" 2>&1; then
    pass "image builds on the prebuilt path ($((SECONDS - build_started)) s)"
else
    tail -n 30 "$state/image-build.log"
    fail "image builds on the prebuilt path" "docker build failed; see above"
    echo "$passed passed, $failed failed"
    exit 1
fi

# --- checks ------------------------------------------------------------------------------------
check_image "$image"
check_source_path "$context"
check_main_deployment
check_generated_passphrase
check_journal_mode
check_migration

say "finished in $((SECONDS - run_started)) s; image size $image_size_mb MB"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
