# Image checks of tests/docker/run.sh. Sourced, not run.

# check_image IMAGE: metadata, no compiler, size.
check_image() {
    local image=$1 metadata expected size
    metadata=$("$DOCKER" image inspect -f \
        '{{json .Config.Entrypoint}} {{json .Config.Healthcheck.Test}} {{.Config.StopSignal}} {{json .Config.ExposedPorts}} {{json .Config.Volumes}}' "$image")
    expected='["supervisor","run"] ["CMD","supervisor","status","--timeout","5"] SIGTERM {"1883/tcp":{},"9001/tcp":{}} {"/encrypted":{}}'
    if [ "$metadata" = "$expected" ]; then
        pass "image entrypoint, healthcheck, stop signal, ports and volume"
    else
        fail "image entrypoint, healthcheck, stop signal, ports and volume" "got $metadata"
    fi

    check "image contains no compiler (cc, c++, gcc, g++, swiftc, clang)" \
        "$DOCKER" run --rm --network none --entrypoint /bin/sh "$image" -c \
        'for tool in cc c++ gcc g++ swiftc clang; do if command -v "$tool"; then exit 1; fi; done'
    check "image runs supervisor, mosquitto 2.0 and gocryptfs 2 from PATH" \
        sh -c "'$DOCKER' run --rm --network none --entrypoint supervisor '$image' version \
            | tr '\n' ' ' | grep -E 'supervisor .*mosquitto version 2\.0.*gocryptfs (v)?2\.'"

    size=$("$DOCKER" image inspect -f '{{.Size}}' "$image")
    image_size_mb=$((size / 1000000))
    say "image size: $image_size_mb MB ($size bytes)"
}

# check_source_path CONTEXT: builds the Dockerfile's default "source" path with the legacy
# builder (the default of Debian's docker.io 20.10), without a prebuilt binary in the context.
# The official Swift image cannot be pulled here, so a stand-in image takes its place: its
# `swift` checks the command line and the copied package, then installs the host-built binary
# where `swift build` would put it. This proves the stages are wired up, not the Swift build.
check_source_path() {
    local context=$1 standin="$state/swift-standin" source_context="$state/source-context"
    mkdir -p "$standin"
    cp "$context/prebuilt/supervisor" "$context/prebuilt/libmosquitto_journal.so" "$standin/"
    cat >"$standin/swift" <<'EOF'
#!/bin/sh
set -e
for required in Package.swift Sources/supervisor/main.swift Sources/MosquittoJournal Tests; do
    [ -e "$required" ] || { echo "missing $required in the build stage" >&2; exit 1; }
done
case "$*" in
"build -c release --static-swift-stdlib --product supervisor")
    install -D -m 0755 /opt/standin/supervisor .build/release/supervisor ;;
"build -c release --product mosquitto_journal")
    for header in mosquitto.h mosquitto_broker.h mosquitto_plugin.h; do
        [ -e "/usr/include/$header" ] || { echo "missing /usr/include/$header in the build stage" >&2; exit 1; }
    done
    install -D -m 0755 /opt/standin/libmosquitto_journal.so .build/release/libmosquitto_journal.so ;;
*)
    echo "unexpected arguments: $*" >&2; exit 1 ;;
esac
EOF
    chmod 0755 "$standin/swift"
    printf '%s\n' 'FROM debian:bookworm-slim' 'COPY supervisor libmosquitto_journal.so swift /opt/standin/' \
        'ENV PATH=/opt/standin:$PATH' >"$standin/Dockerfile"
    "$DOCKER" build -q -t engine-test-swift-standin "$standin" >/dev/null

    mkdir -p "$source_context"
    tar -C "$context" --exclude=./prebuilt -cf - . | tar -C "$source_context" -xf -
    check "source path builds with the legacy builder (stand-in Swift image)" \
        env DOCKER_BUILDKIT=0 "$DOCKER" build --network host \
        --build-arg SWIFT_IMAGE=engine-test-swift-standin -t engine-test-source-path "$source_context"
    check "source path puts the same supervisor in the image" \
        sh -c "'$DOCKER' run --rm --network none --entrypoint cat engine-test-source-path \
            /usr/local/bin/supervisor | cmp - '$context/prebuilt/supervisor'"
    check "source path puts the same journal plugin in the image" \
        sh -c "'$DOCKER' run --rm --network none --entrypoint cat engine-test-source-path \
            /usr/lib/mosquitto-supervisor/libmosquitto_journal.so | cmp - '$context/prebuilt/libmosquitto_journal.so'"
    "$DOCKER" image rm engine-test-source-path engine-test-swift-standin >/dev/null 2>&1 || true
}
