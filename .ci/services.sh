#!/usr/bin/env bash
# Throwaway PostgreSQL and Redis servers on 127.0.0.1, for the tests
# (.ci/run) and the fault scripts (scripts/faults/): source this file, then
# call start_postgres / start_redis. Each installs its server from Debian's
# packages if missing, picks a free port, exports the variables the tests
# read, and registers an EXIT trap that stops it and deletes its files.

start_postgres() {
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$pg_bin" ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
        pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    # initdb and postgres refuse to run as root.
    as_pg=()
    [ "$(id -u)" != 0 ] || as_pg=(runuser -u postgres --)
    pg_dir=$(mktemp -d -t tower-m2m-auth-pg.XXXXXX)
    [ "$(id -u)" != 0 ] || chown postgres: "$pg_dir"
    local password port
    password=$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
    printf '%s\n' "$password" >"$pg_dir/password"
    [ "$(id -u)" != 0 ] || chown postgres: "$pg_dir/password"
    "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --pwfile="$pg_dir/password" \
        --auth-local=scram-sha-256 --auth-host=scram-sha-256 --locale=C --encoding=UTF8 \
        --no-sync >"$pg_dir/initdb.log"
    # A free port: nothing answers on it.
    while port=$((20000 + RANDOM % 30000)); (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do :; done
    printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\n" \
        "$port" "$pg_dir" >>"$pg_dir/data/postgresql.conf"
    pg_ctl_cmd="${as_pg[*]} $pg_bin/pg_ctl -D $pg_dir/data -l $pg_dir/server.log -w"
    trap 'stop_postgres' EXIT
    trap 'exit 130' INT TERM
    $pg_ctl_cmd start >/dev/null
    export TOWER_M2M_AUTH_PG_URL="postgres://postgres:$password@127.0.0.1:$port/postgres"
    export TOWER_M2M_AUTH_PG_CTL="$pg_ctl_cmd"
    echo "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port ($pg_dir)"
}
stop_postgres() {
    $pg_ctl_cmd stop -m fast >/dev/null 2>&1 || true
    rm -rf "$pg_dir"
}
start_redis() {
    if ! command -v redis-server >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    fi
    redis_dir=$(mktemp -d -t tower-m2m-auth-redis.XXXXXX)
    local port previous_trap
    # A free port: nothing answers on it.
    while port=$((20000 + RANDOM % 30000)); (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do :; done
    # Chain with the EXIT trap already set (`trap -p` prints it quoted).
    eval "set -- $(trap -p EXIT)"
    previous_trap=${3:-}
    trap "stop_redis${previous_trap:+; $previous_trap}" EXIT
    trap 'exit 130' INT TERM
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --maxmemory-policy noeviction --dir "$redis_dir" --daemonize yes \
        --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log"
    for _ in $(seq 50); do
        [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && break
        sleep 0.1
    done
    export TOWER_M2M_AUTH_REDIS_URL="redis://127.0.0.1:$port/"
    echo "$(redis-server --version | awk '{print $1, $3}') on 127.0.0.1:$port ($redis_dir)"
}
stop_redis() {
    if [ -s "$redis_dir/redis.pid" ]; then
        kill "$(cat "$redis_dir/redis.pid")" 2>/dev/null || true
    fi
    rm -rf "$redis_dir"
}
