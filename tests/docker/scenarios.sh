# The checks of tests/docker/run.sh, one function per scenario. Sourced, not run.
# shellcheck source=tests/docker/compose.sh
source "$(dirname "${BASH_SOURCE[0]}")/compose.sh"

# check_main_deployment: passphrase secret, password file and ACL, stop, restart, SIGKILL,
# ciphertext at rest, and a wrong passphrase, all in one compose project.
check_main_deployment() {
    local project=enginemain dir container started elapsed log lines passphrase
    local alice_password bob_password carol_password topic payload topic2 payload2 bob_topic got
    local recovery
    new_project "$project"
    dir="$state/projects/$project"
    set_env "$project" COMPOSE_FILE docker-compose.yml:docker-compose.passphrase.yml:docker-compose.ci.yml
    set_env "$project" MOSQUITTO_PASSWORD_FILE /etc/mosquitto/config/passwd
    mqtt_port=$(get_env "$project" CI_MQTT_PORT)

    passphrase="engine-test-passphrase-$(random_text)"
    mkdir -p "$dir/secrets"
    (umask 077 && printf '%s\n' "$passphrase" >"$dir/secrets/gocryptfs_passphrase")
    alice_password=$(random_text)
    bob_password=$(random_text)
    "$DOCKER" run --rm --network none -v "$dir/config:/config" --entrypoint mosquitto_passwd \
        "$image" -c -b /config/passwd alice "$alice_password" >/dev/null
    "$DOCKER" run --rm --network none -v "$dir/config:/config" --entrypoint mosquitto_passwd \
        "$image" -b /config/passwd bob "$bob_password" >/dev/null
    chown 1883:1883 "$dir/config/passwd"
    chmod 0600 "$dir/config/passwd"

    say "main deployment: up (broker on 127.0.0.1:$mqtt_port)"
    started=$SECONDS
    compose_in "$project" up -d --no-build >"$state/$project-up.log" 2>&1
    container=$(container_of "$project")
    healthy_or_stop "1. healthy through its own HEALTHCHECK (first start)" "$container" || return 0
    say "healthy $((SECONDS - started)) s after up"
    check "tunnel profile is not started by a plain up" \
        sh -c "! '$DOCKER' ps -a --filter label=com.docker.compose.project=$project --format '{{.Names}}' | grep -q cloudflared"

    topic="alice/engine-test-$(random_text)"
    payload="payload-$(random_text)"
    bob_topic="bob/engine-test-$(random_text)"
    check "2. alice publishes a retained QoS 1 message under alice/" \
        mqtt_publish alice "$alice_password" "$topic" "$payload"
    expect_message "2. alice reads her retained message" alice "$alice_password" "$topic" "$payload"
    check "2. bob publishes and reads under bob/" mqtt_publish bob "$bob_password" "$bob_topic" bob-payload
    expect_message "2. bob reads his own retained message" bob "$bob_password" "$bob_topic" bob-payload
    got=$(mqtt_read bob "$bob_password" "alice/#")
    if printf '%s' "$got" | grep -q -F "$payload"; then
        fail "2. bob cannot read alice's topic" "bob received $got"
    else
        pass "2. bob cannot read alice's topic"
    fi
    mqtt_publish bob "$bob_password" "$topic" overwritten-by-bob >/dev/null 2>&1 || true
    expect_message "2. bob cannot overwrite alice's message" alice "$alice_password" "$topic" "$payload"
    got=$(mqtt_read alice "wrong-$alice_password" "$topic")
    if printf '%s' "$got" | grep -q -F 'Connection Refused: not authorised'; then
        pass "2. a wrong password is rejected"
    else
        fail "2. a wrong password is rejected" "expected \"Connection Refused: not authorised\", got \"$got\""
    fi

    # Adding a user as docs/docker.md describes: mosquitto_passwd, then SIGHUP to the supervisor.
    carol_password=$(random_text)
    "$DOCKER" run --rm --network none -v "$dir/config:/config" --entrypoint mosquitto_passwd \
        "$image" -b /config/passwd carol "$carol_password" >/dev/null
    got=$(mqtt_publish carol "$carol_password" carol/engine-test carol-payload 2>&1 || true)
    if printf '%s' "$got" | grep -q -F 'Connection Refused: not authorised'; then
        pass "a new user is rejected before the reload"
    else
        fail "a new user is rejected before the reload" "expected \"Connection Refused: not authorised\", got \"$got\""
    fi
    compose_in "$project" kill -s HUP mosquitto >/dev/null 2>&1
    sleep 1
    check "SIGHUP re-renders the configuration and reloads the broker" \
        sh -c "'$DOCKER' logs '$container' 2>&1 | grep -q 'sent SIGHUP to mosquitto'"
    check "a user added to the password file connects after SIGHUP" \
        mqtt_publish carol "$carol_password" carol/engine-test carol-payload

    lines=$(log_length "$container")
    started=$(date +%s%N)
    compose_in "$project" stop >"$state/$project-stop.log" 2>&1
    elapsed=$((($(date +%s%N) - started) / 1000000))
    say "docker-compose stop took $elapsed ms (grace period 40 s)"
    check "3. stop ends the container with exit code 0" test "$(exit_code "$container")" = 0
    check "3. stop takes under 10 s of the 40 s grace period (took $elapsed ms)" test "$elapsed" -lt 10000
    log=$(logs_since "$container" "$((lines + 1))")
    check "3. log shows broker stopped, then synced, then unmounted" \
        in_order "$log" "received SIGTERM" "mosquitto stopped" "synced the filesystem" "unmounted"

    check "5. ./data holds neither topic, payload nor passphrase" \
        absent_from "$dir/data" "$topic" "$payload" "${topic#alice/}" "$passphrase"
    check "5. ./data holds a gocryptfs store" test -s "$dir/data/gocryptfs.conf"

    lines=$(log_length "$container")
    compose_in "$project" up -d --no-build >>"$state/$project-up.log" 2>&1
    healthy_or_stop "4. healthy again after up" "$container" || return 0
    expect_message "4. the retained message comes back after the restart" \
        alice "$alice_password" "$topic" "$payload"

    topic2="alice/engine-test-$(random_text)"
    payload2="payload-$(random_text)"
    check "6. alice publishes a second message before SIGKILL" \
        mqtt_publish alice "$alice_password" "$topic2" "$payload2"
    sleep 1
    "$DOCKER" kill -s KILL "$container" >/dev/null || true
    wait_exited "$container" 30 || true
    check "6. docker kill -s KILL ends the container with 137" test "$(exit_code "$container")" = 137
    lines=$(log_length "$container")
    compose_in "$project" up -d --no-build >>"$state/$project-up.log" 2>&1
    healthy_or_stop "6. healthy after up following SIGKILL" "$container" || return 0
    log=$(logs_since "$container" "$((lines + 1))")
    recovery=$(printf '%s\n' "$log" | grep -E 'removed the dead mount|mount: gocryptfs \(pid [0-9]+\) mounted' || true)
    if [ -n "$recovery" ]; then
        pass "6. log shows the store cleaned or mounted normally"
        say "recovery after SIGKILL: ${recovery##*supervisor }"
    else
        fail "6. log shows the store cleaned or mounted normally" "no such line after the restart"
    fi
    expect_message "6. first message survives SIGKILL" alice "$alice_password" "$topic" "$payload"
    expect_message "6. second message survives SIGKILL" alice "$alice_password" "$topic2" "$payload2"
    check "5. ./data still holds no plaintext after SIGKILL" \
        absent_from "$dir/data" "$topic2" "$payload2" "$passphrase"
    log=$("$DOCKER" inspect "$container"; "$DOCKER" logs "$container" 2>&1)
    check "passphrase is in neither the container's configuration nor its log" \
        lacks "$log" "$passphrase"

    check_wrong_passphrase "$project"
}

# check_wrong_passphrase PROJECT: a passphrase secret that does not open the store.
check_wrong_passphrase() {
    local project=$1 dir="$state/projects/$1" container errors count
    compose_in "$project" stop >>"$state/$project-stop.log" 2>&1
    (umask 077 && printf 'not-the-passphrase\n' >"$dir/secrets/wrong_passphrase")
    set_env "$project" GOCRYPTFS_PASSPHRASE_FILE ./secrets/wrong_passphrase
    compose_in "$project" up -d --no-build --force-recreate >>"$state/$project-up.log" 2>&1
    container=$(container_of "$project")
    if ! wait_exited "$container" 60; then
        fail "wrong passphrase stops the container" "still running after 60 s"
        return
    fi
    check "wrong passphrase gives a non-zero exit code (got $(exit_code "$container"))" \
        test "$(exit_code "$container")" -ne 0
    errors=$("$DOCKER" logs "$container" 2>&1 | grep -F 'supervisor error:' || true)
    count=$(printf '%s' "$errors" | grep -c . || true)
    if [ "$count" = 1 ]; then
        pass "wrong passphrase logs exactly one error line"
    else
        fail "wrong passphrase logs exactly one error line" "found $count lines with \"supervisor error:\""
    fi
    check "the error line names the wrong passphrase" grep -q -F 'wrong passphrase' <<<"$errors"
    say "wrong passphrase: $errors"
    compose_in "$project" down >>"$state/$project-stop.log" 2>&1
}

# check_generated_passphrase: first start without any passphrase, then a new container that
# finds the generated passphrase in the keys directory.
check_generated_passphrase() {
    local project=enginegenerated dir container passphrase topic payload log
    new_project "$project"
    dir="$state/projects/$project"
    mqtt_port=$(get_env "$project" CI_MQTT_PORT)

    say "generated passphrase: first start without a passphrase (broker on 127.0.0.1:$mqtt_port)"
    compose_in "$project" up -d --no-build >"$state/$project-up.log" 2>&1
    container=$(container_of "$project")
    healthy_or_stop "first start without passphrase becomes healthy" "$container" || return 0
    log=$("$DOCKER" logs "$container" 2>&1)
    check "first start logs a warning about the generated passphrase" \
        grep -q -E 'supervisor warning: generated a random passphrase .*/keys/gocryptfs_passphrase' <<<"$log"
    check "generated passphrase file is in ./keys, mode 0400, owned by root" \
        test "$(stat -c '%a %u' "$dir/keys/gocryptfs_passphrase" 2>&1)" = "400 0"
    passphrase=$(head -n 1 "$dir/keys/gocryptfs_passphrase")
    check "generated passphrase is not in ./data" absent_from "$dir/data" "$passphrase"
    check "generated passphrase is not in the log" lacks "$log" "$passphrase"

    topic="alice/engine-test-$(random_text)"
    payload="payload-$(random_text)"
    check "anonymous quick start: a client with a username publishes under it" \
        mqtt_publish alice "" "$topic" "$payload"
    compose_in "$project" down >>"$state/$project-stop.log" 2>&1
    compose_in "$project" up -d --no-build >>"$state/$project-up.log" 2>&1
    container=$(container_of "$project")
    healthy_or_stop "new container with the keys directory becomes healthy" "$container" || return 0
    check "later start reads the generated passphrase" \
        sh -c "'$DOCKER' logs '$container' 2>&1 | grep -q -F 'using the generated passphrase in /keys/gocryptfs_passphrase'"
    expect_message "message survives a new container with the generated passphrase" \
        alice "" "$topic" "$payload"
    compose_in "$project" down >>"$state/$project-stop.log" 2>&1
}
