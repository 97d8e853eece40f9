#!/usr/bin/env bash
# Create the development virtualenv and install requirements-dev.txt into it.
#
# Idempotent: the venv is created only if missing, and pip runs only when
# requirements-dev.txt changed since the last successful install (a hash of it
# is kept in $VENV/.requirements-dev.sha256). Quiet on success; on failure the
# pip/venv output is printed and the exit status is non-zero.
#
# Environment:
#   RUNNX_VENV    venv location (default: .venv at the repository root)
#   RUNNX_PYTHON  interpreter used to create the venv (default: python3)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RUNNX_VENV:-$root/.venv}"
python="${RUNNX_PYTHON:-python3}"
req="$root/requirements-dev.txt"
stamp="$venv/.requirements-dev.sha256"

die() { echo "setup-venv: $*" >&2; exit 1; }

[ -f "$req" ] || die "missing $req"
command -v "$python" >/dev/null 2>&1 || die "'$python' not found (set RUNNX_PYTHON)"

log="$(mktemp "${TMPDIR:-/tmp}/runnx-setup-venv.XXXXXX")"
trap 'rm -f "$log"' EXIT

run_logged() {
    # Run a command with its output captured; show the output only on failure.
    if ! "$@" >"$log" 2>&1; then
        cat "$log" >&2
        return 1
    fi
}

vpy="$venv/bin/python"
if [ ! -x "$vpy" ] || ! "$vpy" -c 'import sys' >/dev/null 2>&1; then
    # Missing or broken (e.g. the interpreter it pointed at is gone): recreate.
    rm -rf "$venv"
    run_logged "$python" -m venv "$venv" \
        || die "could not create the venv at $venv (on Debian/Ubuntu: apt-get install python3-venv)"
fi

hash="$("$vpy" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$req")"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
    exit 0
fi

rm -f "$stamp"
export PIP_DISABLE_PIP_VERSION_CHECK=1
run_logged "$vpy" -m pip install --quiet --requirement "$req" \
    || die "pip install -r $req failed"
printf '%s\n' "$hash" >"$stamp"
