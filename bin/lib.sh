# Shared by bin/panel and bin/test: install what the project needs, idempotently.
# Sourced, not run. Every step says what it does; a missing prerequisite stops with a reason.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR="$ROOT/var"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
mkdir -p "$VAR"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[1;31mError: %s\033[0m\n' "$*" >&2; exit 1; }

# Install Debian packages that are missing (needs root; `apt-get update` only when needed).
ensure_debian_packages() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages: ${missing[*]}; run as root or install them."
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get: this needs Debian."
  say "Installing Debian packages: ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
}

# The machine's Python 3.11 in a virtualenv, with requirements.txt installed when it changed.
ensure_virtualenv() {
  if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    ensure_debian_packages python3 python3-venv
  fi
  python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "the panel needs Python 3.11; python3 is $(python3 --version 2>&1)."
  [ -x "$PY" ] || { say "Creating virtualenv in .venv"; python3 -m venv "$VENV"; }
  local stamp="$VENV/.requirements.sha256" wanted
  wanted="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    say "Installing Python packages from requirements.txt"
    "$PY" -m pip install -q -r "$ROOT/requirements.txt"
    echo "$wanted" > "$stamp"
  fi
}

# A Redis for this run, on 127.0.0.1:$1 with its data in $2; reused if one already answers.
# Sets REDIS_PIDFILE when this run started it, so stop_redis stops only what it started.
REDIS_PIDFILE=""
start_redis() {
  local port="$1" dir="$2"
  ensure_debian_packages redis-server
  if redis-cli -p "$port" ping >/dev/null 2>&1; then
    say "Using the Redis already answering on 127.0.0.1:$port"
    return 0
  fi
  mkdir -p "$dir"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --appendonly yes --save "" >/dev/null
  for _ in $(seq 50); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && { REDIS_PIDFILE="$dir/redis.pid"; return 0; }
    sleep 0.1
  done
  die "Redis did not start on port $port; see $dir/redis.log"
}

stop_redis() {
  [ -n "$REDIS_PIDFILE" ] && [ -f "$REDIS_PIDFILE" ] && kill "$(cat "$REDIS_PIDFILE")" 2>/dev/null
  REDIS_PIDFILE=""
}
