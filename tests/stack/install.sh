#!/usr/bin/env bash
# Installs what the local test stack needs and is missing, at pinned versions:
#   - Debian build packages (apt-get; only as root or with sudo),
#   - Tansu 0.6.0, the Kafka-API broker (cargo install into $PLAYLAKE_TOOLS_DIR),
#   - a project-local Python venv (.venv) with moto[server], duckdb, pyarrow, boto3,
#   - Prometheus from Debian's `prometheus` package (the metrics test runs the binary
#     itself, with its own config and data directory; no service is used).
# Safe to run again: anything already installed at the right version is reused.
set -euo pipefail

# shellcheck source=tests/stack/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Debian packages needed to build the workspace (rdkafka with OpenSSL and zlib) and Tansu.
DEB_PACKAGES=(build-essential pkg-config libssl-dev zlib1g-dev python3 python3-venv)

install_debs() {
    local missing=() pkg
    for pkg in "${DEB_PACKAGES[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return
    fi
    if ! command -v apt-get >/dev/null; then
        log "not a Debian system: make sure these (or equivalents) are installed: ${missing[*]}"
        return
    fi
    local sudo=()
    if ((EUID != 0)); then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            die "missing Debian packages: ${missing[*]}; install them with: sudo apt-get install -y ${missing[*]}"
        fi
    fi
    log "installing Debian packages: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

tansu_is_installed() {
    [[ -x "$TANSU_BIN" ]] || return 1
    local version
    version="$("$TANSU_BIN" --version 2>/dev/null || true)"
    if [[ "$version" == *" $TANSU_VERSION"* ]]; then
        return 0
    fi
    # Fall back to cargo's install record when --version says nothing useful.
    grep -q "\"tansu $TANSU_VERSION " "$TANSU_ROOT/.crates2.json" 2>/dev/null
}

install_tansu() {
    if tansu_is_installed; then
        log "Tansu $TANSU_VERSION: $TANSU_BIN"
        return
    fi
    command -v cargo >/dev/null || die "cargo is missing: install Rust (https://rustup.rs) first"
    mkdir -p "$TOOLS"
    # One build at a time, even when two checkouts install at once.
    exec 9>"$TOOLS/tansu-$TANSU_VERSION.lock"
    log "waiting for the Tansu install lock ($TOOLS/tansu-$TANSU_VERSION.lock)"
    flock 9
    if ! tansu_is_installed; then
        log "building Tansu $TANSU_VERSION (about 18 minutes on 2 cores, once)"
        # Cargo's own target dir for this build: the workspace's build dir stays small.
        CARGO_TARGET_DIR="$TOOLS/tansu-build-target" cargo install tansu \
            --version "$TANSU_VERSION" --locked --features "$TANSU_FEATURES" \
            --root "$TANSU_ROOT"
        rm -rf "$TOOLS/tansu-build-target"
    fi
    flock -u 9
    tansu_is_installed || die "Tansu $TANSU_VERSION did not install into $TANSU_ROOT"
    log "Tansu $TANSU_VERSION: $TANSU_BIN"
}

install_venv() {
    local stamp="$VENV/.requirements.sha256" want
    want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
    if [[ -x "$VENV_PYTHON" ]] && "$VENV_PYTHON" -c 'import sys' 2>/dev/null \
        && [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        log "Python venv up to date: $VENV"
        return
    fi
    if ! [[ -x "$VENV_PYTHON" ]] || ! "$VENV_PYTHON" -c 'import sys' 2>/dev/null; then
        log "creating Python venv $VENV"
        rm -rf "$VENV"
        python3 -m venv "$VENV"
    fi
    log "installing Python packages from ${REQUIREMENTS#"$REPO_ROOT"/}"
    "$VENV_PYTHON" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$want" >"$stamp"
}

# Debian's Prometheus; the metrics test (pipeline/playlake/tests/metrics.rs) starts
# `prometheus` directly on a free port to check every dashboard query against a
# running pipeline. Set PLAYLAKE_TEST_PROMETHEUS to use another binary.
install_prometheus() {
    if [[ -n "${PLAYLAKE_TEST_PROMETHEUS:-}" && -x "${PLAYLAKE_TEST_PROMETHEUS}" ]] \
        || command -v prometheus >/dev/null; then
        log "Prometheus: $(command -v prometheus || echo "$PLAYLAKE_TEST_PROMETHEUS")"
        return
    fi
    if ! command -v apt-get >/dev/null; then
        log "not a Debian system: install Prometheus 2.x and put \`prometheus\` on PATH (or set PLAYLAKE_TEST_PROMETHEUS)"
        return
    fi
    local sudo=()
    if ((EUID != 0)); then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            die "Prometheus is missing; install it with: sudo apt-get install -y --no-install-recommends prometheus"
        fi
    fi
    log "installing Debian's prometheus package"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends prometheus
    command -v prometheus >/dev/null || die "the prometheus package did not install a prometheus binary"
}

install_debs
install_prometheus
install_venv
install_tansu
log "install complete"
