# Journal mode in the image, for tests/docker/run.sh. Sourced, not run.

# check_journal_mode: with SUPERVISOR_DURABILITY=journal in .env, the broker loads the image's
# plugin and `supervisor status` reports the journal. Retained messages come back from the journal
# after a SIGKILL of the whole container.
check_journal_mode() {
    local project=enginejournal dir container config json log lines topic payload deleted
    new_project "$project"
    dir="$state/projects/$project"
    set_env "$project" SUPERVISOR_DURABILITY journal
    mqtt_port=$(get_env "$project" CI_MQTT_PORT)

    say "journal mode: up (broker on 127.0.0.1:$mqtt_port)"
    compose_in "$project" up -d --no-build >"$state/$project-up.log" 2>&1
    container=$(container_of "$project")
    healthy_or_stop "journal mode: healthy through its own HEALTHCHECK" "$container" || return 0

    config=$("$DOCKER" exec "$container" cat /run/mosquitto/mosquitto.conf 2>&1 || true)
    check "journal mode: the configuration loads /usr/lib/mosquitto-supervisor/libmosquitto_journal.so" \
        grep -q -x -F 'plugin /usr/lib/mosquitto-supervisor/libmosquitto_journal.so' <<<"$config"
    json=$("$DOCKER" exec "$container" supervisor status --json 2>&1 || true)
    check "journal mode: status --json reports durability journal" \
        grep -q -F '"durability":"journal"' <<<"$json"
    check "journal mode: status --json has a healthy journal check" \
        grep -q -E '"detail":"journal [^"]*","healthy":true[^}]*"name":"journal"' <<<"$json"

    topic="alice/engine-journal-$(random_text)"
    payload="payload-$(random_text)"
    deleted="alice/engine-journal-deleted-$(random_text)"
    check "journal mode: publish a retained message" mqtt_publish alice "" "$topic" "$payload"
    check "journal mode: publish a second retained message" mqtt_publish alice "" "$deleted" to-be-deleted
    check "journal mode: clear the second message with an empty payload" mqtt_publish alice "" "$deleted" ""
    "$DOCKER" kill -s KILL "$container" >/dev/null || true
    wait_exited "$container" 30 || true
    lines=$(log_length "$container")
    compose_in "$project" up -d --no-build >>"$state/$project-up.log" 2>&1
    healthy_or_stop "journal mode: healthy after up following SIGKILL" "$container" || return 0
    log=$(logs_since "$container" "$((lines + 1))")
    check "journal mode: the plugin replays the journal at start" \
        grep -q -E 'opened /var/lib/mosquitto/[^:]*: [1-9][0-9]* records read' <<<"$log"
    expect_message "journal mode: the retained message survives SIGKILL" alice "" "$topic" "$payload"
    check "journal mode: the cleared message stays cleared" \
        lacks "$(mqtt_read alice "" "$deleted")" to-be-deleted
    check "journal mode: ./data holds neither topic nor payload" \
        absent_from "$dir/data" "$topic" "$payload" "${topic#alice/}" "to-be-deleted"
    compose_in "$project" down >>"$state/$project-stop.log" 2>&1
}
