# shellcheck shell=bash
# Sourced by scripts/test and scripts/demo: makes sure the system packages the build and the
# tests need are present. On Debian/Ubuntu it installs what is missing with apt-get (as root,
# or through sudo); elsewhere it prints exactly what is missing and stops.
#
# Usage: need_packages "<check> <debian-package>" ...
#   where <check> is `cmd:NAME` (an executable on PATH), `pc:NAME` (a pkg-config module)
#   or `file:PATH`.

have() {
    local check=$1
    case $check in
        cmd:*) command -v "${check#cmd:}" >/dev/null 2>&1 || [ -x "/usr/sbin/${check#cmd:}" ] ;;
        pc:*) command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "${check#pc:}" ;;
        file:*) [ -e "${check#file:}" ] ;;
        *) return 1 ;;
    esac
}

need_packages() {
    local missing=() pair check pkg
    for pair in "$@"; do
        check=${pair% *}
        pkg=${pair#* }
        have "$check" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    # De-duplicate while keeping order.
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | awk '!seen[$0]++')
    echo "==> missing system packages: ${missing[*]}"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
            echo "error: not root and no sudo; install them with: apt-get install ${missing[*]}" >&2
            return 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: no apt-get on this machine; install the equivalents of: ${missing[*]}" >&2
        return 1
    fi
    echo "==> installing with apt-get: ${missing[*]}"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || true
    if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
        echo "error: apt-get could not install: ${missing[*]}" >&2
        return 1
    fi
    for pair in "$@"; do
        check=${pair% *}
        pkg=${pair#* }
        if ! have "$check"; then
            echo "error: $pkg was installed but ${check#*:} is still missing" >&2
            return 1
        fi
    done
}

need_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: cargo not found. Install Rust 1.95 with rustup (https://rustup.rs), then re-run." >&2
        return 1
    fi
}

# The packages every build needs: a C compiler for ring and SQLite, pkg-config and libdbus for
# btleplug, dbus-daemon and mosquitto for the tests that run a private bus and a real broker.
BASE_PACKAGES=(
    "cmd:cc gcc"
    "cmd:pkg-config pkg-config"
    "pc:dbus-1 libdbus-1-dev"
    "cmd:dbus-daemon dbus-daemon"
    "cmd:mosquitto mosquitto"
    "cmd:systemd-analyze systemd"
)

# What the clinical-output tests of tm-provider run: node + npm for the independent FHIR
# validator, poppler's pdftotext/pdftoppm to read and render the PDF report, and Debian's
# chromium to load the dashboard headless.
OUTPUT_PACKAGES=(
    "cmd:node nodejs"
    "cmd:npm npm"
    "cmd:pdftotext poppler-utils"
    "cmd:pdftoppm poppler-utils"
    "cmd:chromium chromium"
)

# Installs the FHIR validator's pinned npm packages (provider/tests/fhir-validate, from its
# package-lock.json) when they are missing.
need_fhir_validator() {
    local dir=provider/tests/fhir-validate
    [ -d "$dir/node_modules/@medplum/core" ] && return 0
    echo "==> npm ci in $dir (FHIR validator)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}
