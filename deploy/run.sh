#!/usr/bin/env bash
# The project's two entry points on a fresh Debian machine:
#   bash deploy/run.sh demo [ARGS...]   a whole small city on this machine
#   bash deploy/run.sh test [PYTEST ARGS...]   the test suite
# Each first installs what is missing (Debian packages when run as root, a .venv with the
# package and its extras) and then does its job. A second run installs nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.urbansense-installed"

# Debian packages the project runs or tests against (see README, "What it installs").
APT_PACKAGES=(python3 python3-venv python3-pip mosquitto mosquitto-clients influxdb influxdb-client victoria-metrics prometheus-alertmanager ca-certificates openssl chromium systemd)

say() { printf '==> %s\n' "$*" >&2; }

missing_packages() {
    local pkg missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    echo "${missing[@]:-}"
}

install_system_packages() {
    local missing
    missing="$(missing_packages)"
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        say "missing Debian packages: $missing"
        say "run this script as root once, or: sudo apt-get install -y $missing"
        exit 1
    fi
    say "installing Debian packages: $missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
    # The packages enable system-wide services; the project starts its own private
    # instances on free ports, so the system ones are not needed.
    for svc in mosquitto influxdb prometheus-alertmanager; do
        if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
            systemctl stop "$svc" || true
        fi
    done
}

pick_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null &&
           "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    say "Python 3.11 or newer is needed"
    exit 1
}

install_venv() {
    local want
    want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
    if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
        return 0
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        "$(pick_python)" -m venv "$VENV"
    fi
    say "installing urbansense with extras sim,dev into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$VENV/bin/python" -m pip install -q -e "$ROOT[sim,dev]"
    echo "$want" > "$STAMP"
}

# Stubs of the two boards' MicroPython ports, against which tests/firmware/test_board_types.py
# type-checks the firmware as each board sees it. Each package is a typeshed of its own
# (builtins, time, socket, json ... as MicroPython has them) that would shadow CPython's,
# so each goes into a folder of its own under the venv, never into its site-packages.
BOARD_STUBS=(
    "esp32=micropython-esp32-esp32-generic-stubs==1.29.0.post1"
    "rp2=micropython-rp2-rpi-pico-w-stubs==1.29.0.post1"
)

install_board_stubs() {
    local entry name spec dest
    for entry in "${BOARD_STUBS[@]}"; do
        name="${entry%%=*}"
        spec="${entry#*=}"
        dest="$VENV/board-stubs/$name"
        if [ -f "$dest/.installed" ] && [ "$(cat "$dest/.installed")" = "$spec" ]; then
            continue
        fi
        say "installing $spec into $dest"
        rm -rf "$dest"
        "$VENV/bin/python" -m pip install -q --target "$dest" "$spec"
        echo "$spec" > "$dest/.installed"
    done
}

main() {
    local job="${1:-}"
    [ $# -gt 0 ] && shift
    case "$job" in
        demo|test) ;;
        *) echo "usage: bash deploy/run.sh demo|test [ARGS...]" >&2; exit 2 ;;
    esac
    install_system_packages
    install_venv
    if [ "$job" = test ]; then install_board_stubs; fi
    export PATH="$VENV/bin:$PATH"
    cd "$ROOT"
    case "$job" in
        # The main job: a whole small city on this machine (state in ./var/demo).
        demo) exec "$VENV/bin/urbansense" demo "$@" ;;
        # Four workers (pytest-xdist) on two cores: most tests wait on servers, sleeping
        # nodes and outages they stage, not on the CPU (two workers left the cores idle most
        # of the run); worksteal evens out the long tests at the end.
        # URBANSENSE_TEST_WORKERS=0 runs them one by one.
        # Lint and format check first (ruff, configured in pyproject.toml): a style
        # problem is reported in seconds, before the suite's minutes.
        test)
            say "ruff check and ruff format --check"
            "$VENV/bin/ruff" check --quiet . || { say "ruff found problems (fix: .venv/bin/ruff check --fix .)"; exit 1; }
            "$VENV/bin/ruff" format --check --quiet . || { say "files need formatting (fix: .venv/bin/ruff format .)"; exit 1; }
            exec "$VENV/bin/python" -m pytest -n "${URBANSENSE_TEST_WORKERS:-4}" --dist worksteal "$@" ;;
    esac
}

main "$@"
