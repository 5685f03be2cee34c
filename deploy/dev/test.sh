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

# Debian packages the tests run for real: bubblewrap (the bwrap runtime), Charliecloud and
# debootstrap (the charliecloud runtime and its test image), Grid Engine (the sge batch
# system, started by deploy/dev/infra.py), chromium (the dashboard's browser tests drive
# Debian's build through Playwright; Playwright's own browser download is never used).
debs=()
command -v bwrap >/dev/null || debs+=(bubblewrap)
command -v ch-run >/dev/null || debs+=(charliecloud)
command -v debootstrap >/dev/null || [[ -x /usr/sbin/debootstrap ]] || debs+=(debootstrap)
[[ -x /usr/lib/gridengine/sge_qmaster ]] || debs+=(gridengine-master gridengine-exec gridengine-client)
[[ -x /usr/bin/chromium ]] || debs+=(chromium)
if [[ ${#debs[@]} -gt 0 ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        say "installing ${debs[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${debs[@]}" >/dev/null
    else
        echo "missing Debian packages: sudo apt-get install -y ${debs[*]}" >&2
    fi
fi

# Checked for real too, installed without their recommendations: Prometheus (it scrapes
# the services in the metrics test; it recommends a node exporter) and docker-compose
# (Debian's, client-side only: it validates deploy/compose/ by the Compose specification;
# no container engine is needed or started).
lean=()
command -v prometheus >/dev/null || lean+=(prometheus)
command -v docker-compose >/dev/null || lean+=(docker-compose)
if [[ ${#lean[@]} -gt 0 ]]; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        say "installing ${lean[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            "${lean[@]}" >/dev/null
    else
        echo "missing Debian packages: sudo apt-get install -y ${lean[*]}" >&2
    fi
fi

# The charliecloud tests' images (amd64, and ppc64le under emulation): built once into a
# cache outside the repository, in the background while the venv, ruff and mypy run.
images_pid=
if [[ $(id -u) -eq 0 ]]; then
    images_log=$(mktemp -t hpo-images.XXXXXX)
    (python3 deploy/dev/images.py build --arch amd64 && python3 deploy/dev/images.py build --arch ppc64le) >"$images_log" 2>&1 &
    images_pid=$!
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
if [[ -n $images_pid ]] && ! wait "$images_pid"; then
    echo "the charliecloud test images could not be built; the tests that need them will fail:" >&2
    tail -20 "$images_log" >&2
fi
# A test stuck beyond the reach of its timeout ends the run with every thread's stack
# in this file (tests/watchdog.py), printed here.
HPO_TEST_WATCHDOG=$(mktemp -t hpo-watchdog.XXXXXX)
export HPO_TEST_WATCHDOG
step pytest "$PY" deploy/dev/infra.py run -- "$PY" -m pytest "$@"
if [[ -s $HPO_TEST_WATCHDOG ]]; then
    say "a test was stuck; the stacks of every thread when the watchdog fired"
    cat "$HPO_TEST_WATCHDOG" >&2
fi
rm -f "$HPO_TEST_WATCHDOG"

if [[ ${#failed[@]} -gt 0 ]]; then
    say "FAILED: ${failed[*]}"
    exit 1
fi
say "all checks passed"
