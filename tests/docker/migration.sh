# Migration check of tests/docker/run.sh: a store written the way the old shell entrypoint
# wrote it, opened by the compose deployment. Sourced, not run.

# The old entrypoint's steps, as a shell script for a throwaway container of the new image.
# The cipherdir and mountpoint are given to user mosquitto (uid 1883 in the eclipse-mosquitto
# image). gocryptfs initializes and mounts the store as that user, with the passphrase from
# GOCRYPT_PASSWORD, and mosquitto runs as that user with persistence on the mount.
# Added here: -nosyslog, which keeps gocryptfs from complaining about the missing syslog, and
# fuse settings that let a user other than root mount (/dev/fuse is root-only in a container
# when the host's node is, and -allow_other needs user_allow_other).
old_entrypoint_script='
set -e
chmod 0666 /dev/fuse
echo user_allow_other >>/etc/fuse.conf
chown mosquitto:mosquitto /encrypted /var/lib/mosquitto
chmod 700 /encrypted /var/lib/mosquitto
su mosquitto -s /bin/sh -c "printf \"%s\n\" \"\$GOCRYPT_PASSWORD\" | gocryptfs -init -q /encrypted"
su mosquitto -s /bin/sh -c "printf \"%s\n\" \"\$GOCRYPT_PASSWORD\" | gocryptfs -q -nosyslog -allow_other /encrypted /var/lib/mosquitto"
printf "persistence true\npersistence_location /var/lib/mosquitto/\nlistener %s 127.0.0.1\nallow_anonymous true\n" "$OLD_PORT" >/tmp/old.conf
exec su mosquitto -s /bin/sh -c "exec mosquitto -c /tmp/old.conf"
'

# check_migration: old store and GOCRYPT_PASSWORD, then the same store with a passphrase secret.
check_migration() {
    local project=enginemigration dir old container passphrase topic payload log
    new_project "$project"
    dir="$state/projects/$project"
    mqtt_port=$(get_env "$project" CI_MQTT_PORT)
    passphrase="old-entrypoint-passphrase-$(random_text)"
    topic="alice/engine-test-old-$(random_text)"
    payload="old-payload-$(random_text)"

    say "migration: writing a store the way the old entrypoint did"
    mkdir -p "$dir/data"
    old=$("$DOCKER" run -d --network host --device /dev/fuse --cap-add SYS_ADMIN \
        --security-opt apparmor:unconfined -v "$dir/data:/encrypted" \
        -e GOCRYPT_PASSWORD="$passphrase" -e OLD_PORT="$mqtt_port" \
        --entrypoint /bin/sh "$image" -c "$old_entrypoint_script")
    local waited=0
    until mqtt_publish alice "" "$topic" "$payload" >/dev/null 2>&1; do
        waited=$((waited + 1))
        if [ "$waited" -ge 30 ]; then
            fail "old entrypoint stores a retained message" "$("$DOCKER" logs "$old" 2>&1 | tail -n 5 | tr '\n' ' ')"
            "$DOCKER" rm -f "$old" >/dev/null
            return 0
        fi
        sleep 1
    done
    "$DOCKER" stop -t 20 "$old" >/dev/null
    "$DOCKER" rm "$old" >/dev/null
    check "old store is owned by uid 1883" test "$(stat -c %u "$dir/data/gocryptfs.conf")" = 1883

    # The old compose file set GOCRYPT_PASSWORD in the service's environment.
    cat >"$dir/docker-compose.old-environment.yml" <<'EOF'
services:
  mosquitto:
    environment:
      GOCRYPT_PASSWORD: ${GOCRYPT_PASSWORD}
EOF
    set_env "$project" COMPOSE_FILE docker-compose.yml:docker-compose.old-environment.yml:docker-compose.ci.yml
    GOCRYPT_PASSWORD=$passphrase compose_in "$project" up -d --no-build >"$state/$project-up.log" 2>&1
    container=$(container_of "$project")
    healthy_or_stop "migration: old store opens with GOCRYPT_PASSWORD" "$container" || return 0
    log=$("$DOCKER" logs "$container" 2>&1)
    check "migration: GOCRYPT_PASSWORD is read with a warning" \
        grep -q -F 'supervisor warning: reading the passphrase from GOCRYPT_PASSWORD' <<<"$log"
    expect_message "migration: the old retained message is there" alice "" "$topic" "$payload"
    compose_in "$project" down >>"$state/$project-stop.log" 2>&1

    mkdir -p "$dir/secrets"
    (umask 077 && printf '%s\n' "$passphrase" >"$dir/secrets/gocryptfs_passphrase")
    set_env "$project" COMPOSE_FILE docker-compose.yml:docker-compose.passphrase.yml:docker-compose.ci.yml
    compose_in "$project" up -d --no-build >>"$state/$project-up.log" 2>&1
    container=$(container_of "$project")
    healthy_or_stop "migration: old store opens with the passphrase secret" "$container" || return 0
    log=$("$DOCKER" logs "$container" 2>&1)
    check "migration: no GOCRYPT_PASSWORD warning with the secret" lacks "$log" GOCRYPT_PASSWORD
    expect_message "migration: the old message is still there with the secret" \
        alice "" "$topic" "$payload"
    compose_in "$project" down >>"$state/$project-stop.log" 2>&1
}
