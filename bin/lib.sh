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

# Python 3.11 (Debian 12), 3.12 (Ubuntu 24.04) or 3.13 (Debian 13), the ones LXD hosts have.
python_supported() {
  "$1" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))' 2>/dev/null
}

# Export the settings of a .env file (KEY=value lines, # comments, optional quotes), as
# docker compose reads the same file: nothing in it is run by the shell, a variable already
# in the environment wins, and an empty value means the setting's default.
load_dotenv() {
  local file="$1" line key value number=0
  [ -f "$file" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    number=$((number + 1))
    line="${line%$'\r'}"
    [[ "$line" =~ ^[[:space:]]*(#.*)?$ ]] && continue
    [[ "$line" =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] \
      || die "$file, line $number: not a KEY=value line"
    key="${BASH_REMATCH[2]}"
    value="${BASH_REMATCH[3]}"
    if [[ "$value" =~ ^\"(.*)\"$ ]] || [[ "$value" =~ ^\'(.*)\'$ ]]; then
      value="${BASH_REMATCH[1]}"
    fi
    [ -n "$value" ] && [ -z "${!key+set}" ] && export "$key=$value"
  done < "$file"
  return 0
}

# The machine's Python (3.11 to 3.13) in a virtualenv, with the given pinned requirements
# files installed when they changed: bin/panel asks for requirements.txt (runtime only),
# bin/test for requirements-dev.txt (which includes it).
ensure_virtualenv() {
  if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    ensure_debian_packages python3 python3-venv
  fi
  python_supported python3 \
    || die "the panel needs Python 3.11, 3.12 or 3.13; python3 is $(python3 --version 2>&1)."
  [ -x "$PY" ] || { say "Creating virtualenv in .venv"; python3 -m venv "$VENV"; }
  local stamp="$VENV/.requirements.sha256" wanted files=() file
  for file in "$@"; do files+=("$ROOT/$file"); done
  [ ${#files[@]} -gt 0 ] || files=("$ROOT/requirements.txt")
  wanted="$(cat "${files[@]}" "$ROOT/requirements.txt" | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    say "Installing Python packages from ${*:-requirements.txt}"
    local args=()
    for file in "${files[@]}"; do args+=(-r "$file"); done
    "$PY" -m pip install -q "${args[@]}"
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

# A private PostgreSQL cluster for this run, from Debian's server packages: its files in $2,
# listening on 127.0.0.1:$1 only, one superuser `panel` with a generated password.
# Run by root, the server runs as the `postgres` user (PostgreSQL refuses root). Exports
# PANEL_DATABASE_URL; sets PG_STARTED when this run started it, so stop_postgres stops only that.
PG_STARTED=""
# A test cluster: nothing in it needs to survive a crash of the machine.
PG_TEST_OPTIONS="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
start_postgres() {
  local port="$1" dir="$2" bin as=()
  ensure_debian_packages postgresql
  bin="$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -1)"
  [ -x "$bin/initdb" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
  PG_BIN="$bin"
  if [ "$(id -u)" -eq 0 ]; then as=(runuser -u postgres --); fi
  mkdir -p "$dir"
  if ! "${as[@]}" test -x "$dir"; then
    # A checkout under a folder the postgres user cannot enter (/root/...): the cluster's
    # files go to a folder of their own, named after this one.
    dir="/var/tmp/panel-test-pg-$(printf '%s' "$dir" | sha256sum | cut -c1-12)"
    mkdir -p "$dir" && chmod 0711 "$dir"
  fi
  PG_DIR="$dir"
  if [ ! -s "$dir/password" ]; then
    (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/password")
  fi
  if [ ! -f "$dir/cluster/PG_VERSION" ]; then
    say "Creating a PostgreSQL cluster in ${dir#"$ROOT"/}"
    rm -rf "$dir/cluster" "$dir/run"
    mkdir -p "$dir/cluster" "$dir/run"
    cp "$dir/password" "$dir/run/pwfile"
    [ ${#as[@]} -eq 0 ] || chown postgres: "$dir/cluster" "$dir/run" "$dir/run/pwfile"
    "${as[@]}" "$bin/initdb" -D "$dir/cluster" -U panel --pwfile "$dir/run/pwfile" \
      --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale C.UTF-8 >"$dir/initdb.log" \
      || die "initdb failed; see $dir/initdb.log"
    rm -f "$dir/run/pwfile"
  fi
  export PANEL_DATABASE_URL="postgres://panel:$(cat "$dir/password")@127.0.0.1:$port/panel"
  if "${as[@]}" "$bin/pg_ctl" -D "$dir/cluster" status >/dev/null 2>&1; then
    say "Using the PostgreSQL already running in ${dir#"$ROOT"/}"
  else
    [ ${#as[@]} -eq 0 ] || chown postgres: "$dir/run"
    "${as[@]}" "$bin/pg_ctl" -D "$dir/cluster" -l "$dir/run/server.log" -w -t 60 start \
      -o "-p $port -c listen_addresses=127.0.0.1 -k $dir/run $PG_TEST_OPTIONS" >/dev/null \
      || die "PostgreSQL did not start on port $port; see $dir/run/server.log"
    PG_STARTED=1
  fi
  # The database the settings name (tests create test_panel beside it).
  PGPASSWORD="$(cat "$dir/password")" psql -h 127.0.0.1 -p "$port" -U panel -d postgres -tAq \
    -c "SELECT 1 FROM pg_database WHERE datname = 'panel'" | grep -q 1 \
    || PGPASSWORD="$(cat "$dir/password")" createdb -h 127.0.0.1 -p "$port" -U panel panel
}

stop_postgres() {
  local as=()
  [ -n "$PG_STARTED" ] || return 0
  if [ "$(id -u)" -eq 0 ]; then as=(runuser -u postgres --); fi
  "${as[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/cluster" -m fast -w stop >/dev/null 2>&1 || true
  PG_STARTED=""
}
