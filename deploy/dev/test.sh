#!/usr/bin/env bash
# Run the whole check on a fresh machine: venv, install, ruff, mypy, then pytest with the
# test servers (RabbitMQ, SecantusDB, moto S3) started and stopped by deploy/dev/infra.py.
#
#   deploy/dev/test.sh                      # everything
#   deploy/dev/test.sh tests/unit -k name   # arguments go to pytest
#
# All steps run even if one fails; the exit status is non-zero if any failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
VENV=.venv
PY="$VENV/bin/python"
STAMP="$VENV/.hpo-relay-installed"
export PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf '\n== %s\n' "$*" >&2; }

make_venv() {
    rm -rf "$VENV"
    python3 -m venv "$VENV"
}

if [[ ! -x "$PY" ]]; then
    say "creating $VENV"
    if ! make_venv; then
        if [[ $(id -u) -ne 0 ]]; then
            echo "python3 -m venv failed; install python3-venv (sudo apt-get install -y python3-venv)" >&2
            exit 1
        fi
        say "installing python3-venv"
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
        make_venv
    fi
fi

# bubblewrap: the bwrap runtime's contract tests run real sandboxes.
if ! command -v bwrap >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        say "installing bubblewrap"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap >/dev/null
    else
        echo "bubblewrap is missing: install it (sudo apt-get install -y bubblewrap)" >&2
    fi
fi

# prometheus: the metrics test has a real Prometheus scrape the services.
# (--no-install-recommends: the node exporter it recommends is not needed.)
if ! command -v prometheus >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        say "installing prometheus"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            prometheus >/dev/null
    else
        echo "prometheus is missing: install it (sudo apt-get install -y prometheus)" >&2
    fi
fi

# docker-compose (Debian's, client-side only): validates deploy/compose/ by the Compose
# specification; no container engine is needed or started.
if ! command -v docker-compose >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        say "installing docker-compose (to validate deploy/compose/)"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            docker-compose >/dev/null
    else
        echo "docker-compose is missing: install it (sudo apt-get install -y docker-compose)" >&2
    fi
fi

wanted=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -f "$STAMP" || $(cat "$STAMP") != "$wanted" ]]; then
    say "installing hpo-relay[demo,dev] into $VENV (pyproject.toml changed or first run)"
    # (this machine's pip warns about every absent local index entry: drop that noise)
    "$PY" -m pip install -q -e '.[demo,dev]' 2>&1 | { grep -v "is ignored: it is neither" || true; }
    echo "$wanted" > "$STAMP"
fi

# PyTorch: the layout tests run a real torch.distributed all-reduce. Exactly this pin,
# because this machine's package mirror holds the CPU build of 2.13.0 only; any other
# spelling would download the multi-GB CUDA build from the public index.
if ! "$PY" -c "import torch" 2>/dev/null; then
    say "installing torch==2.13.0 (CPU build) for the layout tests"
    "$PY" -m pip install -q torch==2.13.0 2>&1 | { grep -v "is ignored: it is neither" || true; }
fi

failed=()
step() {
    local name=$1
    shift
    say "$name"
    local code=0
    "$@" || code=$?
    if [[ $code -eq 5 && $name == pytest ]]; then
        echo "pytest collected no tests: that counts as a failure" >&2
    fi
    if [[ $code -ne 0 ]]; then
        failed+=("$name (exit $code)")
    fi
}

step ruff "$PY" -m ruff check .
step ruff-format "$PY" -m ruff format --check .
step mypy "$PY" -m mypy
step pytest "$PY" deploy/dev/infra.py run -- "$PY" -m pytest "$@"

if [[ ${#failed[@]} -gt 0 ]]; then
    say "FAILED: ${failed[*]}"
    exit 1
fi
say "all checks passed"
