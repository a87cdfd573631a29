# Compose project and MQTT client helpers for tests/docker/run.sh. Sourced, not run.
# They use $state (the run's temporary directory), $image and $DOCKER from run.sh.

# new_project NAME: copies the deployment files into $state/projects/NAME, the way an operator
# would lay them out: compose files, config/ and .env made from .env.sample. The broker gets
# two free ports on 127.0.0.1 through docker-compose.ci.yml.
new_project() {
    local name=$1 dir="$state/projects/$1"
    mkdir -p "$dir"
    cp "$repo"/docker-compose.yml "$repo"/docker-compose.passphrase.yml "$repo"/docker-compose.ci.yml "$dir/"
    cp -r "$repo/config" "$dir/config"
    cp "$repo/.env.sample" "$dir/.env"
    set_env "$name" MOSQUITTO_IMAGE "$image"
    local mqtt websockets
    mqtt=$(free_port)
    websockets=$(free_port)
    while [ "$websockets" = "$mqtt" ]; do
        websockets=$(free_port)
    done
    set_env "$name" CI_MQTT_PORT "$mqtt"
    set_env "$name" CI_WEBSOCKETS_PORT "$websockets"
    set_env "$name" COMPOSE_FILE docker-compose.yml:docker-compose.ci.yml
    projects+=("$name")
}

# set_env PROJECT KEY VALUE: sets KEY in the project's .env, replacing an uncommented line.
set_env() {
    local file="$state/projects/$1/.env"
    if grep -q "^$2=" "$file"; then
        sed -i "s|^$2=.*|$2=$3|" "$file"
    else
        printf '%s=%s\n' "$2" "$3" >>"$file"
    fi
}

get_env() {
    sed -n "s|^$2=||p" "$state/projects/$1/.env" | tail -n 1
}

# compose_in PROJECT ARGS...: docker-compose in the project's directory, so .env applies.
compose_in() {
    local name=$1
    shift
    (cd "$state/projects/$name" && docker-compose --project-name "$name" "$@")
}

container_of() {
    compose_in "$1" ps -q mosquitto
}

# healthy_or_stop NAME CONTAINER: the check that CONTAINER becomes healthy within 90 s. On
# failure it shows the end of the container's log and returns 1, so the scenario can stop
# instead of failing every later check for the same reason.
healthy_or_stop() {
    local output
    if output=$(wait_healthy "$2" 90 2>&1); then
        pass "$1"
        return 0
    fi
    fail "$1" "$output"
    "$DOCKER" logs --tail 20 "$2" 2>&1 | sed 's/^/    log: /'
    return 1
}

# logs_since CONTAINER LINE: the container's log (stdout and stderr) from line LINE on.
logs_since() {
    "$DOCKER" logs "$1" 2>&1 | tail -n "+$2"
}

log_length() {
    "$DOCKER" logs "$1" 2>&1 | wc -l
}

# random_text: 24 hex digits, for passwords, topics and payloads that cannot occur by chance.
random_text() {
    od -An -N12 -tx1 /dev/urandom | tr -d ' \n'
}

# mqtt_publish USER PASSWORD TOPIC MESSAGE: publishes one retained QoS 1 message. PASSWORD may be
# empty.
mqtt_publish() {
    local credentials=(-u "$1")
    [ -z "$2" ] || credentials+=(-P "$2")
    timeout 15 mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" "${credentials[@]}" \
        -i "engine-test-pub-$RANDOM" -q 1 -r -t "$3" -m "$4"
}

# mqtt_read USER PASSWORD FILTER: prints the first message on FILTER within 4 s (a retained
# message arrives at once), or nothing when none arrives.
mqtt_read() {
    local credentials=(-u "$1")
    [ -z "$2" ] || credentials+=(-P "$2")
    timeout 15 mosquitto_sub -h 127.0.0.1 -p "$mqtt_port" "${credentials[@]}" \
        -i "engine-test-sub-$RANDOM" -q 1 -t "$3" -C 1 -W 4 2>&1 || true
}

# expect_message NAME USER PASSWORD TOPIC PAYLOAD: a check that USER reads PAYLOAD on TOPIC.
expect_message() {
    local got
    got=$(mqtt_read "$2" "$3" "$4")
    if [ "$got" = "$5" ]; then
        pass "$1"
    else
        fail "$1" "expected \"$5\" on $4 as $2, got \"$got\""
    fi
}

# in_order TEXT NEEDLE...: succeeds when each NEEDLE occurs in TEXT after the previous one.
in_order() {
    local text=$1 last=0 line
    shift
    for needle in "$@"; do
        line=$(printf '%s\n' "$text" | grep -n -F -- "$needle" | head -n 1 | cut -d: -f1)
        if [ -z "$line" ]; then
            echo "\"$needle\" is not in the log"
            return 1
        fi
        if [ "$line" -le "$last" ]; then
            echo "\"$needle\" (line $line) comes before the previous step (line $last)"
            return 1
        fi
        last=$line
    done
}

# lacks TEXT NEEDLE: succeeds when TEXT does not contain NEEDLE.
lacks() {
    if grep -q -F -- "$2" <<<"$1"; then
        echo "found the text"
        return 1
    fi
}

# absent_from DIRECTORY TEXT...: succeeds when no file below DIRECTORY contains any TEXT.
absent_from() {
    local directory=$1
    shift
    for text in "$@"; do
        if grep -r -a -l -F -- "$text" "$directory"; then
            echo "found \"$text\" in the files listed above"
            return 1
        fi
    done
}
