# Image of the supervisor, Mosquitto and gocryptfs. `supervisor run` is PID 1: it unlocks the
# encrypted store in /encrypted, mounts it on /var/lib/mosquitto, then starts and supervises the
# broker.
#
# Two ways to get the supervisor binary and the journal mode's broker plugin, chosen by the
# build argument SUPERVISOR_BINARY:
#   source    (default) compile both in the official Swift image. This is the path for users:
#               docker build -t mosquitto-supervisor:local .
#   prebuilt  copy both files, built on the host, into the image. CI uses this path because it
#             cannot pull the Swift image:
#               swift build -c release --static-swift-stdlib --product supervisor
#               swift build -c release --product mosquitto_journal   # needs mosquitto-dev
#               install -D .build/release/supervisor prebuilt/supervisor
#               install -D -m 0644 .build/release/libmosquitto_journal.so \
#                   prebuilt/libmosquitto_journal.so
#               DOCKER_BUILDKIT=1 docker build --build-arg SUPERVISOR_BINARY=prebuilt \
#                   -t mosquitto-supervisor:local .
#             The host must run a glibc no newer than Debian bookworm's (2.36), because only
#             the Swift libraries are linked statically.
# Both paths end in the same runtime stage, so the images differ only in those two files.
# The prebuilt path needs BuildKit, which skips the unused Swift stage. The legacy builder builds
# every stage, so it would try to pull the Swift image.

ARG SUPERVISOR_BINARY=source
# NOTE: the tag follows the official image's <version>-bookworm naming. It is not pulled in CI,
# which takes the prebuilt path, so the Swift stage is not tested there.
ARG SWIFT_IMAGE=swift:6.3-bookworm

# Path "source": build the static binary in the official Swift image.
FROM ${SWIFT_IMAGE} AS supervisor-source
# The journal plugin includes the broker's plugin headers: mosquitto_broker.h and
# mosquitto_plugin.h from mosquitto-dev, mosquitto.h from libmosquitto-dev. This stage is
# thrown away, so the versions need no pin.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        mosquitto-dev libmosquitto-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
# Not compiled, but SwiftPM rejects a package whose declared test target folders are missing.
COPY Tests ./Tests
RUN swift build -c release --static-swift-stdlib --product supervisor \
    && swift build -c release --product mosquitto_journal \
    && install -D -m 0755 .build/release/supervisor /out/supervisor \
    && install -D -m 0644 .build/release/libmosquitto_journal.so /out/libmosquitto_journal.so

# Path "prebuilt": take the files prebuilt/supervisor and prebuilt/libmosquitto_journal.so
# from the build context. The legacy builder builds this stage on the "source" path too, where
# they are absent. Its COPY then still finds a source (Package.swift), because a wildcard may
# match nothing.
FROM scratch AS supervisor-prebuilt
COPY Package.swift prebuil[t]/supervisor prebuil[t]/libmosquitto_journal.so /out/

# A stage name, not an image, so there is no tag to pin.
# hadolint ignore=DL3006
FROM supervisor-${SUPERVISOR_BINARY} AS supervisor-binary

# Runtime: Debian packages only, no compiler and no build tools.
FROM debian:bookworm-slim

# The broker user gets the fixed uid and gid 1883, as in the eclipse-mosquitto image that the
# old shell entrypoint ran on. The encrypted files keep their owner, so a store written by that
# image stays readable, and a password file on the host can be given to uid 1883.
# The Debian package's postinst creates the user only when it is missing.
# Package versions are not pinned: bookworm's security updates replace them, and the archive
# then no longer serves the pinned version, which would break the build.
# hadolint ignore=DL3008
RUN groupadd --system --gid 1883 mosquitto \
    && useradd --system --uid 1883 --gid mosquitto --home-dir /var/lib/mosquitto \
        --no-create-home --shell /usr/sbin/nologin mosquitto \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        mosquitto gocryptfs fuse3 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

COPY --from=supervisor-binary /out/supervisor /usr/local/bin/supervisor
# Loaded by the broker when SUPERVISOR_DURABILITY=journal; `supervisor run` looks for it here.
COPY --from=supervisor-binary /out/libmosquitto_journal.so /usr/lib/mosquitto-supervisor/libmosquitto_journal.so
COPY mosquitto.conf.template /etc/mosquitto/mosquitto.conf.template
COPY config/acl /etc/mosquitto/acl
# The broker re-reads the ACL file as user mosquitto on SIGHUP, and a checkout made under a
# strict umask would leave it unreadable. (COPY --chmod would need BuildKit.)
RUN chmod 0644 /etc/mosquitto/mosquitto.conf.template /etc/mosquitto/acl \
        /usr/lib/mosquitto-supervisor/libmosquitto_journal.so

# The mosquitto package's own configuration and init script are not used: the supervisor
# renders /run/mosquitto/mosquitto.conf from the template at every start.
VOLUME /encrypted
EXPOSE 1883 9001
STOPSIGNAL SIGTERM
# `supervisor status` bounds itself by --timeout, which stays below the check's own timeout.
HEALTHCHECK --interval=10s --timeout=10s --start-period=60s --retries=3 \
    CMD ["supervisor", "status", "--timeout", "5"]
ENTRYPOINT ["supervisor", "run"]
