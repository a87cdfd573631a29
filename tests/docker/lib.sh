# Helpers for tests/docker/run.sh: check counters, a private Docker daemon, the base image and
# waiting on containers. Sourced, not run.

passed=0
failed=0

say() { printf '%s docker-test: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

pass() {
    passed=$((passed + 1))
    printf 'ok   %s\n' "$1"
}

# fail NAME DETAIL: records a failed check. The run goes on and exits non-zero at the end.
fail() {
    failed=$((failed + 1))
    printf 'FAIL %s: %s\n' "$1" "$2"
}

# check NAME COMMAND...: passes when the command exits 0, fails with its output otherwise.
check() {
    local name=$1 output
    shift
    if output=$("$@" 2>&1); then
        pass "$name"
    else
        fail "$name" "$(printf '%s' "$output" | tail -n 5 | tr '\n' ' ')"
    fi
}

# skip_or_fail REASON: without CI, a missing engine skips the test. Under CI it fails the test.
skip_or_fail() {
    if [ -n "${CI:-}" ]; then
        echo "docker-test: FAILED: $1 (CI is set, so the engine test must run)" >&2
        echo "0 passed, 1 failed"
        exit 1
    fi
    echo "docker-test: skipped: $1"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
}

# --- private Docker daemon -------------------------------------------------------------------

# start_dockerd STATE_DIR DATA_ROOT: starts dockerd on its own socket, exec root and pidfile
# below STATE_DIR (kept short, because unix socket paths are limited to 107 bytes), and waits
# until `docker info` succeeds. No default bridge is created, so nothing clashes with another daemon on the host.
# Published ports would bind to 127.0.0.1 only (--ip).
start_dockerd() {
    local state=$1 data_root=$2
    dockerd_state=$state
    export DOCKER_HOST="unix://$state/docker.sock"
    dockerd --data-root "$data_root" --exec-root "$state/exec" --pidfile "$state/dockerd.pid" \
        --host "$DOCKER_HOST" --ip 127.0.0.1 --bridge none \
        >"$state/dockerd.log" 2>&1 &
    dockerd_pid=$!
    local waited=0
    until "$DOCKER" info >/dev/null 2>&1; do
        if ! kill -0 "$dockerd_pid" 2>/dev/null; then
            dockerd_pid=
            return 1
        fi
        if [ "$waited" -ge 300 ]; then
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

# stop_dockerd: SIGTERM to the daemon started above, SIGKILL after 30 s.
stop_dockerd() {
    [ -n "${dockerd_pid:-}" ] || return 0
    kill -TERM "$dockerd_pid" 2>/dev/null || true
    local waited=0
    while kill -0 "$dockerd_pid" 2>/dev/null && [ "$waited" -lt 300 ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$dockerd_pid" 2>/dev/null; then
        say "dockerd (pid $dockerd_pid) did not stop within 30 s; sending SIGKILL"
        kill -KILL "$dockerd_pid" 2>/dev/null || true
    fi
    wait "$dockerd_pid" 2>/dev/null || true
    dockerd_pid=
    # dockerd leaves the bind mount of its default network namespace behind.
    if grep -q " $dockerd_state/exec/netns/default " /proc/mounts; then
        umount "$dockerd_state/exec/netns/default" || true
    fi
}

# --- base image --------------------------------------------------------------------------------

# debian_mirror [security]: the Debian archive URI that apt on this machine already uses, or
# with the argument `security`, the URI of the security archive. DEBIAN_MIRROR overrides the
# first.
debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ] && [ "${1:-}" != security ]; then
        printf '%s\n' "$DEBIAN_MIRROR"
        return 0
    fi
    local filter=(grep -v -- '-security') uri
    if [ "${1:-}" = security ]; then
        filter=(grep -- '-security')
    fi
    uri=$( { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
             grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'
           } | "${filter[@]}" | head -n 1 || true)
    if [ -z "$uri" ]; then
        uri=http://deb.debian.org/debian
        [ "${1:-}" = security ] && uri=http://deb.debian.org/debian-security
    fi
    printf '%s\n' "$uri"
}

# ensure_base_image TARBALL: makes debian:bookworm-slim available without a registry. It reuses
# the image, or imports the cached TARBALL, or builds the root filesystem with debootstrap
# first. The result is close to the official slim image: apt lists cleaned, documentation and
# translations excluded from later installs.
ensure_base_image() {
    local tarball=$1
    if "$DOCKER" image inspect debian:bookworm-slim >/dev/null 2>&1; then
        say "using the existing image debian:bookworm-slim"
        return 0
    fi
    if [ ! -s "$tarball" ]; then
        local rootfs mirror
        rootfs=$(mktemp -d /var/tmp/bookworm-rootfs.XXXXXX)
        mirror=$(debian_mirror)
        say "building the bookworm root filesystem with debootstrap from $mirror"
        if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$state/debootstrap.log" 2>&1; then
            tail -n 20 "$state/debootstrap.log"
            rm -rf "$rootfs"
            return 1
        fi
        cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $(debian_mirror security) bookworm-security main
EOF
        cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
EOF
        find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
        rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
        rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
        tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
    fi
    say "importing $tarball as debian:bookworm-slim"
    "$DOCKER" import --change 'CMD ["bash"]' "$tarball" debian:bookworm-slim >/dev/null
}

# --- ports and containers ----------------------------------------------------------------------

# free_port: a TCP port on 127.0.0.1 that nothing accepts connections on.
free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    return 1
}

container_state() {
    "$DOCKER" inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' "$1" 2>/dev/null
}

# wait_healthy CONTAINER SECONDS: waits for the health status `healthy`. It fails early when the
# container exits.
wait_healthy() {
    local container=$1 limit=$2 started=$SECONDS state
    while [ $((SECONDS - started)) -lt "$limit" ]; do
        state=$(container_state "$container" || true)
        case "$state" in
            "running healthy") return 0 ;;
            exited* | dead*) echo "container $container is $state" ; return 1 ;;
        esac
        sleep 0.5
    done
    echo "container $container not healthy after $limit s (state: $state)"
    return 1
}

# wait_exited CONTAINER SECONDS: waits until the container is no longer running.
wait_exited() {
    local container=$1 limit=$2 started=$SECONDS
    while [ $((SECONDS - started)) -lt "$limit" ]; do
        case "$(container_state "$container" || true)" in
            exited* | dead*) return 0 ;;
        esac
        sleep 0.2
    done
    return 1
}

exit_code() {
    "$DOCKER" inspect -f '{{.State.ExitCode}}' "$1"
}
