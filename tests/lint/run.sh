#!/usr/bin/env bash
# Lints the container files: the Kubernetes manifests against the API schemas of Kubernetes
# releases, the Dockerfile with hadolint, and the Compose files and manifests with yamllint.
# It also checks that no source file imports all of Foundation, which would link ICU's data into
# the static binary (docs/ARCHITECTURE.md).
#
# Usage: tests/lint/run.sh
#
# The linters pinned in tests/lint/requirements.txt are installed from PyPI into a virtualenv
# (LINT_VENV, default /var/tmp/mosquitto-supervisor-lint-venv) on the first run and reused
# while requirements.txt is unchanged, so later runs need no network. The kustomizations are
# rendered with `kubectl kustomize`. Without kubectl those checks are skipped, or fail when CI
# is set.
#
# Prints one line per check, then "N passed, M failed" (with ", K skipped" when checks were
# skipped), and exits 1 when a check failed.

set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

VENV=${LINT_VENV:-/var/tmp/mosquitto-supervisor-lint-venv}
REQUIREMENTS=tests/lint/requirements.txt
# The oldest Kubernetes release whose schema accepts every field of the manifests
# (securityContext.appArmorProfile is new in 1.30), and the newest that kubernetes-validate
# ships schemas for.
KUBERNETES_VERSIONS=(1.30.0 1.37.0)

passed=0
failed=0
skipped=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Runs one check: `check NAME COMMAND...`. Prints "ok" or "FAIL" with the name, and the
# command's output, indented, when it failed.
check() {
    local name=$1
    shift
    if "$@" >"$scratch/output" 2>&1; then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
        sed 's/^/     /' "$scratch/output"
    fi
}

skip() {
    skipped=$((skipped + 1))
    echo "skip $1"
}

finish() {
    if ((skipped > 0)); then
        echo "$passed passed, $failed failed, $skipped skipped"
    else
        echo "$passed passed, $failed failed"
    fi
    if ((failed > 0)); then
        exit 1
    fi
    exit 0
}

# Creates the virtualenv when it is missing or broken and installs the pinned linters when
# requirements.txt differs from the copy kept in the virtualenv after the last install.
# A lock keeps two runs from installing into the same virtualenv at once.
install_linters() {
    mkdir -p "$(dirname "$VENV")" || return 1
    exec 9>"$VENV.lock"
    flock 9
    if [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c '' 2>/dev/null \
        && cmp -s "$REQUIREMENTS" "$VENV/installed-requirements.txt"; then
        return 0
    fi
    if ! [[ -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c '' 2>/dev/null; then
        rm -rf "$VENV"
        python3 -m venv "$VENV" || return 1
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS" || return 1
    cp "$REQUIREMENTS" "$VENV/installed-requirements.txt"
}

# Validates every resource in a file against one release's schema, rejecting properties the
# schema does not define. kubernetes-validate only warns about a kind it has no schema for (a
# misspelled kind or apiVersion), so a warning fails the check too.
validate() {
    local file=$1 version=$2 output
    output=$("$VENV/bin/kubernetes-validate" --strict --kubernetes-version "$version" "$file" 2>&1)
    local status=$?
    grep -v '^INFO' <<<"$output"
    ((status == 0)) && ! grep -q '^WARN' <<<"$output" && grep -q ' passed for resource ' <<<"$output"
}

# Renders a kustomization and validates the result.
validate_kustomization() {
    local directory=$1 version=$2 rendered
    rendered="$scratch/$(echo "$directory" | tr / _).yaml"
    kubectl kustomize "$directory" >"$rendered" && validate "$rendered" "$version"
}

report_missing_kubectl() {
    echo "kubectl is not installed; install it (it renders the kustomizations offline) or unset CI to skip these checks"
    return 1
}

# Installing is a step, not a check: it is counted only when it fails.
if ! install_linters >"$scratch/output" 2>&1; then
    failed=$((failed + 1))
    echo "FAIL install the linters of $REQUIREMENTS into $VENV"
    sed 's/^/     /' "$scratch/output"
    finish
fi

# Resource files: every YAML file under deploy/ except kustomizations and patches (named
# *-patch.yaml), which hold only part of a resource and are checked in the rendered output.
mapfile -t resources < <(find deploy \( -name '*.yaml' -o -name '*.yml' \) ! -name kustomization.yaml \
    ! -name '*-patch.yaml' | sort)
mapfile -t kustomizations < <(find deploy -name kustomization.yaml -printf '%h\n' | sort)

check "configmap matches mosquitto.conf.template and config/acl" "$VENV/bin/python" tests/lint/configmap.py

for version in "${KUBERNETES_VERSIONS[@]}"; do
    for file in "${resources[@]}"; do
        check "kubernetes-validate $file (Kubernetes $version)" validate "$file" "$version"
    done
    for directory in "${kustomizations[@]}"; do
        name="kubectl kustomize $directory, validated (Kubernetes $version)"
        if command -v kubectl >/dev/null; then
            check "$name" validate_kustomization "$directory" "$version"
        elif [[ -n ${CI:-} ]]; then
            check "$name" report_missing_kubectl
        else
            skip "$name: kubectl is not installed"
        fi
    done
done

check "hadolint Dockerfile" "$VENV/bin/hadolint" --no-color Dockerfile

# Succeeds when no file under Sources imports Foundation (FoundationEssentials is allowed).
no_foundation_import() {
    ! grep -rn --include='*.swift' -E '^[[:space:]]*(@[A-Za-z_]+[[:space:]]+)?import[[:space:]]+Foundation[[:space:]]*$' Sources
}
check "Sources import FoundationEssentials, not Foundation" no_foundation_import

mapfile -t yaml_files < <(ls docker-compose*.yml 2>/dev/null; find deploy \( -name '*.yaml' -o -name '*.yml' \) | sort
    echo .yamllint)
if ! [[ -e docker-compose.yml ]]; then
    yaml_files+=(docker-compose.yml)
fi
for file in "${yaml_files[@]}"; do
    check "yamllint $file" "$VENV/bin/yamllint" --strict --config-file .yamllint --format parsable "$file"
done

finish
