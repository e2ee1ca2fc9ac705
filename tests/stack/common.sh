# shellcheck shell=bash
# Shared settings of the local test stack scripts; sourced, never run.
# shellcheck disable=SC2034  # the variables are used by the scripts that source this

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS="${PLAYLAKE_TOOLS_DIR:-$HOME/.cache/playlake}"
TANSU_VERSION="0.6.0"
TANSU_FEATURES="dynostore,libsql"
TANSU_ROOT="$TOOLS/tansu-$TANSU_VERSION"
TANSU_BIN="$TANSU_ROOT/bin/tansu"
VENV="$REPO_ROOT/.venv"
VENV_PYTHON="$VENV/bin/python"
STACK_DIR="$REPO_ROOT/.stack"
ENV_FILE="$STACK_DIR/env"
REQUIREMENTS="$REPO_ROOT/tests/requirements.txt"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# Prints a free loopback TCP port (the kernel picks it).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
