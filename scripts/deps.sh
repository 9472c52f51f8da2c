# shellcheck shell=bash
# Sourced by scripts/test and scripts/demo: makes sure the system packages the build and the
# tests need are present. On Debian/Ubuntu it installs what is missing with apt-get (as root,
# or through sudo); elsewhere it prints exactly what is missing and stops.
#
# Usage: need_packages "<check> <debian-package>" ...
#   where <check> is `cmd:NAME` (an executable on PATH), `pc:NAME` (a pkg-config module),
#   `pg:NAME` (a PostgreSQL program) or `file:PATH`.

have() {
    local check=$1
    case $check in
        cmd:*) command -v "${check#cmd:}" >/dev/null 2>&1 || [ -x "/usr/sbin/${check#cmd:}" ] ;;
        pc:*) command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "${check#pc:}" ;;
        file:*) [ -e "${check#file:}" ] ;;
        # A PostgreSQL program: Debian keeps the server's outside PATH, per major version.
        pg:*) compgen -G "/usr/lib/postgresql/*/bin/${check#pg:}" >/dev/null \
            || command -v "${check#pg:}" >/dev/null 2>&1 ;;
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

# Stops with a clear message when the file system that holds the build (CARGO_TARGET_DIR,
# else target/) has less than $1 GiB free: a build that runs out of space fails with linker
# crashes that name nothing.
need_disk() {
    local want_gib=$1 dir=${CARGO_TARGET_DIR:-target} free_kib
    # The nearest directory that exists: creating the target directory here would keep cargo
    # from marking it as its own (CACHEDIR.TAG), which the chain tests use to find its root.
    while [ ! -d "$dir" ]; do dir=$(dirname "$dir"); done
    free_kib=$(df -Pk "$dir" | awk 'NR == 2 { print $4 }')
    if [ "$free_kib" -lt $((want_gib * 1024 * 1024)) ]; then
        echo "error: $((free_kib / 1024 / 1024)) GiB free for the build in $dir; it needs about ${want_gib} GiB. Free some space (cargo clean removes an old build) and re-run." >&2
        return 1
    fi
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

# The PostgreSQL server programs for the provider's tests on its PostgreSQL backend:
# scripts/test starts a private cluster of its own with them (scripts/pg-cluster).
POSTGRES_PACKAGES=(
    "pg:initdb postgresql"
    "pg:pg_ctl postgresql"
    "pg:psql postgresql-client"
)

# Installs the FHIR validator's pinned npm packages (provider/tests/fhir-validate, from its
# package-lock.json) when they are missing.
need_fhir_validator() {
    local dir=provider/tests/fhir-validate
    [ -d "$dir/node_modules/@medplum/core" ] && return 0
    echo "==> npm ci in $dir (FHIR validator)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}

# Installs the accessibility checker the browser tests inject into the pages (axe-core, pinned
# in testkit/axe/package-lock.json) when it is missing.
need_axe() {
    local dir=testkit/axe
    [ -f "$dir/node_modules/axe-core/axe.min.js" ] && return 0
    echo "==> npm ci in $dir (axe-core accessibility checker)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}
