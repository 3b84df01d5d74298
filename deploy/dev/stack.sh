#!/usr/bin/env bash
# stack.sh -- a private RabbitMQ 3.10 + Postgres 15 for integration tests.
#
# Both servers run as unprivileged processes (users rabbitmq / postgres when
# started as root, else the calling user) on free loopback ports, with every
# file under DIR. Nothing system-wide is touched: no service units, no
# /var/lib/rabbitmq, no cluster on 5432/5672. See README.md next to this file.
#
#   stack.sh up DIR              start both (fresh data), write DIR/env
#   stack.sh down DIR            stop both (by pid); safe to call twice
#   stack.sh status DIR          exit 0 when both answer, 3 otherwise
#   stack.sh restart-rabbit DIR  stop + start RabbitMQ, same ports and data
#   stack.sh restart-pg DIR      stop + start Postgres, same port and data
#   stack.sh stop-rabbit|start-rabbit|stop-pg|start-pg DIR
#   stack.sh ctl DIR ARGS...     rabbitmqctl against the private node
#   stack.sh standby-up|standby-promote|standby-down DIR   a streaming replica of
#                                the stack's Postgres (DIR/standby.env), promote it, stop it
#   stack.sh cluster-up DIR      a 3-node RabbitMQ cluster (no Postgres), DIR/env
#   stack.sh cluster-down DIR    stop every node and the cluster's epmd
#   stack.sh cluster-stop-node|cluster-start-node DIR N   one node (1..3)
#   stack.sh cluster-ctl DIR N ARGS...   rabbitmqctl against node N
#
# ESS_STACK_TIMEOUT (seconds, default 90) bounds every wait.
# ESS_STACK_FAST=1 at `up` turns Postgres fsync off (faster CI, NOT durable
# across an OS crash; a killed postgres process still loses nothing).
set -euo pipefail

PG_BIN=/usr/lib/postgresql/15/bin
RMQ_BIN=/usr/lib/rabbitmq/bin
TIMEOUT=${ESS_STACK_TIMEOUT:-90}
FAST=${ESS_STACK_FAST:-0} # read before DIR/env (which also sets it) is loaded
SELF=$(readlink -f "$0")

die() {
    echo "stack.sh: $*" >&2
    exit 1
}

say() {
    echo "stack.sh: $*" >&2
}

usage() {
    sed -n '9,21p' "$SELF" | sed 's/^# \{0,1\}//' >&2
    exit 64
}

# ---------------------------------------------------------------- setup ----

ensure_packages() {
    local missing=() p
    for p in rabbitmq-server postgresql-15 postgresql-client-15 python3; do
        if ! dpkg -s "$p" >/dev/null 2>&1; then
            missing+=("$p")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        die "missing packages: ${missing[*]} (run as root to install them)"
    fi
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 ||
        die "apt-get install ${missing[*]} failed"
}

# Run as the service user when we are root; else as ourselves.
as_user() {
    local user=$1
    shift
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$user" -- "$@"
    else
        "$@"
    fi
}

own() {
    local user=$1
    shift
    if [ "$(id -u)" = 0 ]; then
        chown -R "$user:" "$@"
    fi
}

# Print N free loopback TCP ports, all distinct (held open until all are picked).
free_ports() {
    /usr/bin/python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

port_free() {
    /usr/bin/python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

pid_alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null
}

read_pid() {
    if [ -s "$1" ]; then
        head -n1 "$1" | tr -dc '0-9'
    fi
}

# Wait until pid $1 exits, at most $2 seconds. 0 if it exited.
wait_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while pid_alive "$pid"; do
        if [ $SECONDS -ge $deadline ]; then
            return 1
        fi
        sleep 0.2
    done
}

# TERM, bounded wait, then KILL: for one pid this script started.
kill_pid() {
    local pid=$1 what=$2
    if ! pid_alive "$pid"; then
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_exit "$pid" 20; then
        say "$what (pid $pid) ignored SIGTERM for 20s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_exit "$pid" 10 || say "$what (pid $pid) survived SIGKILL"
    fi
}

tail_log() {
    local f
    for f in "$@"; do
        if [ -s "$f" ]; then
            echo "----- last lines of $f -----" >&2
            tail -n 40 "$f" >&2
        fi
    done
}

load_env() {
    if [ ! -f "$DIR/env" ]; then
        die "$DIR/env missing: run 'stack.sh up $DIR' first"
    fi
    set -a
    # shellcheck disable=SC1091
    . "$DIR/env"
    set +a
}

# ------------------------------------------------------------- rabbitmq ----

# RABBIT_DIR: a cluster node's directory (cluster_select); else the stack's one.
RDIR() { echo "${RABBIT_DIR:-$DIR/rabbit}"; }

rabbit_env() {
    local r
    r=$(RDIR)
    echo "HOME=$r/home"
    echo "RABBITMQ_CONF_ENV_FILE=$r/rabbitmq-env.conf"
    echo "RABBITMQ_CONFIG_FILE=$r/rabbitmq.conf"
    echo "RABBITMQ_ADVANCED_CONFIG_FILE=$r/advanced.config"
    echo "RABBITMQ_MNESIA_BASE=$r/mnesia"
    echo "RABBITMQ_LOG_BASE=$r/log"
    echo "RABBITMQ_LOGS=$r/log/rabbit.log"
    echo "RABBITMQ_FEATURE_FLAGS_FILE=$r/feature_flags"
    echo "RABBITMQ_ENABLED_PLUGINS_FILE=$r/enabled_plugins"
    echo "RABBITMQ_PID_FILE=$ESS_RABBIT_PIDFILE"
    echo "RABBITMQ_NODENAME=$ESS_RABBIT_NODE"
    echo "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1"
    echo "RABBITMQ_NODE_PORT=$ESS_AMQP_PORT"
    echo "RABBITMQ_DIST_PORT=$ESS_RABBIT_DIST_PORT"
    echo "ERL_EPMD_ADDRESS=127.0.0.1"
    echo "ERL_EPMD_PORT=$ESS_EPMD_PORT"
    # Distribution listener on loopback too (port from RABBITMQ_DIST_PORT).
    echo "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"
}

# Run a command as the rabbitmq user with the node's private environment
# (its own HOME holds the node's own Erlang cookie, so CLI and server agree).
as_rabbit() {
    local envs=()
    mapfile -t envs < <(rabbit_env)
    as_user rabbitmq env "${envs[@]}" "$@"
}

ctl() {
    as_rabbit timeout "$((TIMEOUT + 15))" "$RMQ_BIN/rabbitmqctl" -q -n "$ESS_RABBIT_NODE" "$@"
}

# A throw-away CA and a server certificate for localhost / 127.0.0.1 (2 days).
rabbit_tls() {
    local d=$1
    mkdir -p "$d"
    (
        cd "$d"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout ca.key -out ca.pem -days 2 -subj "/CN=ESS stack test CA" \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout server.key -out server.csr -subj /CN=localhost
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
            -out server.pem -extfile server.ext
        rm -f ca.key server.csr ca.srl
    ) >"$d/openssl.log" 2>&1 || die "cannot make the TLS test certificates: $(cat "$d/openssl.log")"
}

rabbit_init() {
    local r
    r=$(RDIR)
    mkdir -p "$r/home" "$r/mnesia" "$r/log"
    if [ -n "${CLUSTER_COOKIE:-}" ]; then # cluster nodes must share one cookie
        printf '%s' "$CLUSTER_COOKIE" >"$r/home/.erlang.cookie"
    else
        /usr/bin/python3 -c 'import secrets,string; print("".join(secrets.choice(string.ascii_uppercase) for _ in range(32)), end="")' \
            >"$r/home/.erlang.cookie"
    fi
    chmod 400 "$r/home/.erlang.cookie"
    echo '[].' >"$r/enabled_plugins"
    : >"$r/rabbitmq-env.conf"
    rabbit_tls "$r/tls"
    # The listener must be in the config file: a config without one binds [::]:5672.
    # The TLS listener (amqps://localhost:PORT, a CA made here) is for the
    # amqps:// tests; clients are not asked for certificates.
    cat >"$r/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$ESS_AMQP_PORT
listeners.ssl.1 = 127.0.0.1:$ESS_AMQPS_PORT
ssl_options.cacertfile = $r/tls/ca.pem
ssl_options.certfile = $r/tls/server.pem
ssl_options.keyfile = $r/tls/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
loopback_users.guest = true
disk_free_limit.absolute = 50MB
log.file.level = info
EOF
    own rabbitmq "$r"
}

epmd_start() {
    local r pidfile
    r=$(RDIR)
    pidfile="${EPMD_PIDFILE:-$r/epmd.pid}" # a cluster's nodes share one epmd
    if pid_alive "$(read_pid "$pidfile")"; then
        return 0
    fi
    port_free "$ESS_EPMD_PORT" || die "epmd port $ESS_EPMD_PORT is taken by another process"
    spawn rabbitmq "$pidfile" "$r/log/epmd.log" \
        /usr/bin/epmd -address 127.0.0.1 -port "$ESS_EPMD_PORT"
    wait_port "$ESS_EPMD_PORT" 15 || {
        tail_log "$r/log/epmd.log"
        die "epmd did not listen on 127.0.0.1:$ESS_EPMD_PORT within 15s"
    }
}

# spawn USER PIDFILE LOG CMD...: run CMD detached (own session, stdio to LOG,
# so a ctest fixture does not wait on its pipes). The shell writes its own pid
# after the user switch and then execs CMD, so PIDFILE holds CMD's pid.
spawn() {
    local user=$1 pidfile=$2 log=$3
    shift 3
    local pre=()
    if [ "$(id -u)" = 0 ]; then
        pre=(runuser -u "$user" --)
    fi
    # exec: no shell stays behind holding our stdout, and every inherited
    # descriptor above 2 is closed first (a ctest pipe would keep ctest waiting).
    (
        cd "$DIR" || exit 1
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            if [ "$fd" -gt 2 ]; then
                eval "exec $fd>&-" 2>/dev/null || true
            fi
        done
        # shellcheck disable=SC2016
        exec setsid "${pre[@]}" bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" "$@" \
            </dev/null >>"$log" 2>&1
    ) &
}

# Wait until something listens on 127.0.0.1:$1, at most $2 seconds.
wait_port() {
    local deadline=$((SECONDS + $2))
    while port_free "$1"; do
        if [ $SECONDS -ge $deadline ]; then
            return 1
        fi
        sleep 0.2
    done
}

rabbit_running() {
    pid_alive "$(read_pid "$ESS_RABBIT_PIDFILE")" && ctl status >/dev/null 2>&1
}

start_rabbit() {
    local r
    r=$(RDIR)
    if rabbit_running; then
        return 0
    fi
    port_free "$ESS_AMQP_PORT" || die "AMQP port $ESS_AMQP_PORT is taken by another process"
    epmd_start
    rm -f "$ESS_RABBIT_PIDFILE"
    local envs=()
    mapfile -t envs < <(rabbit_env)
    spawn rabbitmq "$r/server.pid" "$r/log/console.log" \
        env "${envs[@]}" "$RMQ_BIN/rabbitmq-server"
    if ! ctl -t "$TIMEOUT" wait "$ESS_RABBIT_PIDFILE" >/dev/null 2>&1 ||
        ! ctl await_startup >/dev/null 2>&1; then
        tail_log "$r/log/console.log" "$r/log/rabbit.log"
        stop_rabbit_quiet
        die "RabbitMQ node $ESS_RABBIT_NODE did not start within ${TIMEOUT}s"
    fi
    wait_port "$ESS_AMQP_PORT" 15 || {
        tail_log "$r/log/rabbit.log"
        stop_rabbit_quiet
        die "RabbitMQ is up but not listening on 127.0.0.1:$ESS_AMQP_PORT"
    }
    say "rabbitmq $ESS_RABBIT_NODE up on 127.0.0.1:$ESS_AMQP_PORT (pid $(read_pid "$ESS_RABBIT_PIDFILE"))"
}

stop_rabbit_quiet() {
    local r beam shpid epmd
    r=$(RDIR)
    beam=$(read_pid "$ESS_RABBIT_PIDFILE")
    shpid=$(read_pid "$r/server.pid")
    if pid_alive "$beam"; then
        if ! ctl -t "$TIMEOUT" stop "$ESS_RABBIT_PIDFILE" >/dev/null 2>&1; then
            say "rabbitmqctl stop failed; signalling pid $beam"
        fi
        kill_pid "$beam" "rabbitmq beam"
    fi
    kill_pid "$shpid" "rabbitmq-server script"
    rm -f "$r/server.pid"
    if [ -n "${EPMD_PIDFILE:-}" ]; then # cluster: the other nodes still need it
        return 0
    fi
    epmd=$(read_pid "$r/epmd.pid")
    kill_pid "$epmd" "epmd"
    rm -f "$r/epmd.pid"
}

stop_rabbit() {
    if ! pid_alive "$(read_pid "$ESS_RABBIT_PIDFILE")" &&
        ! pid_alive "$(read_pid "$(RDIR)/epmd.pid")"; then
        say "rabbitmq $ESS_RABBIT_NODE not running"
        return 0
    fi
    stop_rabbit_quiet
    say "rabbitmq $ESS_RABBIT_NODE stopped"
}

# ------------------------------------------------------------- postgres ----

pg() {
    as_user postgres "$@"
}

pg_init() {
    mkdir -p "$ESS_PG_DATA" "$ESS_PG_SOCKDIR"
    chmod 700 "$ESS_PG_DATA"
    own postgres "$ESS_PG_DATA" "$ESS_PG_SOCKDIR"
    pg "$PG_BIN/initdb" -D "$ESS_PG_DATA" -U postgres -E UTF8 --locale=C \
        --auth-local=trust --auth-host=trust >"$DIR/pg-initdb.log" 2>&1 || {
        tail_log "$DIR/pg-initdb.log"
        die "initdb failed"
    }
    cat >>"$ESS_PG_DATA/postgresql.conf" <<EOF

# ---- ess stack.sh (private test cluster; trust auth on loopback only) ----
listen_addresses = '127.0.0.1'
port = $ESS_PG_PORT
unix_socket_directories = '$ESS_PG_SOCKDIR'
max_connections = 200
EOF
    if [ "$FAST" = 1 ]; then
        echo "fsync = off    # ESS_STACK_FAST=1: not crash-safe against an OS crash" \
            >>"$ESS_PG_DATA/postgresql.conf"
    fi
}

pg_running() {
    pid_alive "$(read_pid "$ESS_PG_DATA/postmaster.pid")" &&
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$ESS_PG_PORT" -t 3 >/dev/null 2>&1
}

start_pg() {
    if pg_running; then
        return 0
    fi
    port_free "$ESS_PG_PORT" || die "Postgres port $ESS_PG_PORT is taken by another process"
    touch "$ESS_PG_LOG"
    own postgres "$ESS_PG_LOG"
    if ! pg "$PG_BIN/pg_ctl" -D "$ESS_PG_DATA" -l "$ESS_PG_LOG" -w -t "$TIMEOUT" start \
        </dev/null >/dev/null 2>&1; then
        tail_log "$ESS_PG_LOG"
        die "Postgres did not start on 127.0.0.1:$ESS_PG_PORT within ${TIMEOUT}s"
    fi
    say "postgres up on 127.0.0.1:$ESS_PG_PORT (pid $(read_pid "$ESS_PG_DATA/postmaster.pid"))"
}

pg_create_db() {
    local psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$ESS_PG_SOCKDIR" -p "$ESS_PG_PORT" -U postgres -d postgres)
    pg "${psql[@]}" -c "CREATE ROLE ess LOGIN CREATEDB" >/dev/null ||
        die "could not create role ess"
    pg "${psql[@]}" -c "CREATE DATABASE ess OWNER ess" >/dev/null ||
        die "could not create database ess"
}

stop_pg() {
    local pid
    pid=$(read_pid "$ESS_PG_DATA/postmaster.pid")
    if pid_alive "$pid"; then
        if ! pg "$PG_BIN/pg_ctl" -D "$ESS_PG_DATA" -m fast -w -t "$TIMEOUT" stop >/dev/null 2>&1; then
            say "pg_ctl stop failed; signalling postmaster pid $pid"
            tail_log "$ESS_PG_LOG"
        fi
        kill_pid "$pid" "postmaster"
        say "postgres stopped"
    else
        say "postgres not running"
    fi
}

# ------------------------------------------------------------- env file ----

write_env() {
    local f="$DIR/env.tmp"
    {
        echo "# written by stack.sh up; sourced by with_stack.sh"
        printf '%s=%q\n' \
            ESS_STACK_DIR "$DIR" \
            ESS_STACK_SH "$SELF" \
            ESS_STACK_FAST "$FAST" \
            ESS_AMQP_URL "amqp://guest:guest@127.0.0.1:$ESS_AMQP_PORT/" \
            ESS_AMQP_PORT "$ESS_AMQP_PORT" \
            ESS_AMQPS_URL "amqps://guest:guest@localhost:$ESS_AMQPS_PORT/" \
            ESS_AMQPS_PORT "$ESS_AMQPS_PORT" \
            ESS_STACK_CA_FILE "$DIR/rabbit/tls/ca.pem" \
            ESS_RABBIT_NODE "$ESS_RABBIT_NODE" \
            ESS_RABBIT_PIDFILE "$ESS_RABBIT_PIDFILE" \
            ESS_RABBIT_DIST_PORT "$ESS_RABBIT_DIST_PORT" \
            ESS_RABBIT_LOG "$DIR/rabbit/log/rabbit.log" \
            ESS_RABBITMQCTL "$DIR/bin/rabbitmqctl" \
            ESS_EPMD_PORT "$ESS_EPMD_PORT" \
            ESS_PG_URL "postgresql://ess@127.0.0.1:$ESS_PG_PORT/ess" \
            ESS_PG_PORT "$ESS_PG_PORT" \
            ESS_PG_DATA "$ESS_PG_DATA" \
            ESS_PG_SOCKDIR "$ESS_PG_SOCKDIR" \
            ESS_PG_LOG "$ESS_PG_LOG" \
            ESS_PG_BIN "$PG_BIN" \
            ESS_PSQL "$DIR/bin/psql"
    } >"$f"
    mv "$f" "$DIR/env"
}

# Convenience wrappers for tests and humans: DIR/bin/rabbitmqctl, DIR/bin/psql.
write_wrappers() {
    mkdir -p "$DIR/bin"
    cat >"$DIR/bin/rabbitmqctl" <<EOF
#!/usr/bin/env bash
# rabbitmqctl for the private node of $DIR (e.g. list_queues, close_all_connections)
exec "$SELF" ctl "$DIR" "\$@"
EOF
    cat >"$DIR/bin/psql" <<EOF
#!/bin/sh
# psql connected to the private ess database of $DIR
exec "$PG_BIN/psql" -X "postgresql://ess@127.0.0.1:$ESS_PG_PORT/ess" "\$@"
EOF
    chmod 755 "$DIR/bin/rabbitmqctl" "$DIR/bin/psql"
}

# -------------------------------------------------------------- standby ----
# A hot standby of the stack's Postgres (pg_basebackup -R, streaming), on its
# own port, data in DIR/pg-standby: for testing a multi-host conninfo and a
# failover (stop-pg, standby-promote). DIR/standby.env has ESS_PG_STANDBY_PORT.

STANDBY_DATA() { echo "$DIR/pg-standby"; }

cmd_standby_up() {
    local sb port
    sb=$(STANDBY_DATA)
    cmd_standby_down >/dev/null 2>&1 || true
    rm -rf "${sb:?}" "$DIR/pgsock-standby" "$DIR/standby.env"
    mkdir -p "$sb" "$DIR/pgsock-standby"
    chmod 700 "$sb"
    own postgres "$sb" "$DIR/pgsock-standby"
    read -r port < <(free_ports 1)
    # -c fast: the default spread checkpoint can take minutes on a busy primary.
    pg "$PG_BIN/pg_basebackup" -h 127.0.0.1 -p "$ESS_PG_PORT" -U postgres -D "$sb" -R \
        -X stream -c fast >"$DIR/pg-standby-basebackup.log" 2>&1 || {
        tail_log "$DIR/pg-standby-basebackup.log"
        die "pg_basebackup from 127.0.0.1:$ESS_PG_PORT failed"
    }
    printf '\n# ---- stack.sh standby-up: a hot standby of 127.0.0.1:%s ----\nport = %s\nunix_socket_directories = '"'"'%s'"'"'\nhot_standby = on\n' \
        "$ESS_PG_PORT" "$port" "$DIR/pgsock-standby" | pg tee -a "$sb/postgresql.conf" >/dev/null
    touch "$DIR/pg-standby.log"
    own postgres "$DIR/pg-standby.log"
    if ! pg "$PG_BIN/pg_ctl" -D "$sb" -l "$DIR/pg-standby.log" -w -t "$TIMEOUT" start \
        </dev/null >/dev/null 2>&1; then
        tail_log "$DIR/pg-standby.log"
        die "the standby did not start on 127.0.0.1:$port within ${TIMEOUT}s"
    fi
    printf 'ESS_PG_STANDBY_PORT=%q\nESS_PG_STANDBY_DATA=%q\n' "$port" "$sb" >"$DIR/standby.env"
    say "postgres standby of :$ESS_PG_PORT up on 127.0.0.1:$port"
}

cmd_standby_promote() {
    pg "$PG_BIN/pg_ctl" -D "$(STANDBY_DATA)" -w -t "$TIMEOUT" promote >/dev/null ||
        die "pg_ctl promote of $(STANDBY_DATA) failed"
    say "postgres standby promoted"
}

cmd_standby_down() {
    local sb pid
    sb=$(STANDBY_DATA)
    pid=$(read_pid "$sb/postmaster.pid")
    if pid_alive "$pid"; then
        pg "$PG_BIN/pg_ctl" -D "$sb" -m fast -w -t "$TIMEOUT" stop >/dev/null 2>&1 || true
        kill_pid "$pid" "standby postmaster"
        say "postgres standby stopped"
    fi
}

# -------------------------------------------------------------- cluster ----
# Three nodes ess-cl{1,2,3}-PID@localhost, each with its own AMQP and
# distribution port and directory DIR/node<i>, one private epmd (its own
# port) and one Erlang cookie; nodes 2 and 3 join node 1. DIR/env has
# ESS_AMQP_URL as the three node URLs, comma-separated (ess_bus tries them in
# order), and ESS_CLUSTER_AMQP_PORTS / ESS_CLUSTER_NODES, space-separated.

CLUSTER_N=3

# Point the single-node rabbit functions at node $1 of the cluster in DIR.
cluster_select() {
    local i=$1 ports dists nodes
    case "$i" in 1 | 2 | 3) ;; *) die "cluster node must be 1..$CLUSTER_N, not '$i'" ;; esac
    read -r -a ports <<<"$ESS_CLUSTER_AMQP_PORTS"
    read -r -a dists <<<"$ESS_CLUSTER_DIST_PORTS"
    read -r -a nodes <<<"$ESS_CLUSTER_NODES"
    RABBIT_DIR="$DIR/node$i"
    EPMD_PIDFILE="$DIR/node1/epmd.pid"
    ESS_AMQP_PORT=${ports[$((i - 1))]}
    ESS_RABBIT_DIST_PORT=${dists[$((i - 1))]}
    ESS_RABBIT_NODE=${nodes[$((i - 1))]}
    ESS_RABBIT_PIDFILE="$RABBIT_DIR/rabbit.pid"
}

cluster_write_env() {
    local f="$DIR/env.tmp" urls="" p
    for p in $ESS_CLUSTER_AMQP_PORTS; do
        urls="${urls:+$urls,}amqp://guest:guest@127.0.0.1:$p/"
    done
    {
        echo "# written by stack.sh cluster-up"
        printf '%s=%q\n' \
            ESS_CLUSTER_DIR "$DIR" \
            ESS_STACK_SH "$SELF" \
            ESS_AMQP_URL "$urls" \
            ESS_CLUSTER_AMQP_PORTS "$ESS_CLUSTER_AMQP_PORTS" \
            ESS_CLUSTER_DIST_PORTS "$ESS_CLUSTER_DIST_PORTS" \
            ESS_CLUSTER_NODES "$ESS_CLUSTER_NODES" \
            ESS_EPMD_PORT "$ESS_EPMD_PORT" \
            CLUSTER_COOKIE "$CLUSTER_COOKIE"
    } >"$f"
    mv "$f" "$DIR/env"
}

cluster_start_node() {
    cluster_select "$1"
    start_rabbit
}

cluster_join() {
    local first
    first=${ESS_CLUSTER_NODES%% *}
    cluster_select "$1"
    # join_cluster prints harmless errors about tables of the node being joined.
    { ctl stop_app && ctl join_cluster "$first" && ctl start_app; } >>"$(RDIR)/log/join.log" 2>&1 || {
        tail_log "$(RDIR)/log/join.log"
        die "node $ESS_RABBIT_NODE could not join $first (see $(RDIR)/log/rabbit.log)"
    }
    say "$ESS_RABBIT_NODE joined $first"
}

cluster_stop_all() {
    local i
    for i in $(seq 1 $CLUSTER_N); do
        cluster_select "$i"
        stop_rabbit
    done
    kill_pid "$(read_pid "$DIR/node1/epmd.pid")" "epmd"
    rm -f "$DIR/node1/epmd.pid"
}

cmd_cluster_up() {
    local i all
    ensure_packages
    mkdir -p "$DIR"
    DIR=$(readlink -f "$DIR")
    if [ -f "$DIR/env" ]; then
        load_env
        say "cluster in $DIR: stopping what is left and starting fresh"
        cluster_stop_all
    fi
    rm -rf "${DIR:?}"/node[0-9] "$DIR/env"
    read -r -a all < <(free_ports $((2 * CLUSTER_N + 1)))
    ESS_CLUSTER_AMQP_PORTS="${all[*]:0:$CLUSTER_N}"
    ESS_CLUSTER_DIST_PORTS="${all[*]:$CLUSTER_N:$CLUSTER_N}"
    ESS_EPMD_PORT=${all[$((2 * CLUSTER_N))]}
    ESS_CLUSTER_NODES=""
    for i in $(seq 1 $CLUSTER_N); do
        ESS_CLUSTER_NODES="${ESS_CLUSTER_NODES:+$ESS_CLUSTER_NODES }ess-cl$i-$$@localhost"
    done
    CLUSTER_COOKIE=$(/usr/bin/python3 -c 'import secrets,string; print("".join(secrets.choice(string.ascii_uppercase) for _ in range(32)))')
    cluster_write_env
    trap 'if [ $? -ne 0 ]; then cluster_stop_all; fi' EXIT
    for i in $(seq 1 $CLUSTER_N); do
        cluster_select "$i"
        rabbit_init
        start_rabbit
        if [ "$i" -gt 1 ]; then
            cluster_join "$i"
        fi
    done
    trap - EXIT
    echo "$DIR/env"
}

cmd_cluster_down() {
    if [ ! -f "$DIR/env" ]; then
        say "nothing to stop in $DIR"
        return 0
    fi
    DIR=$(readlink -f "$DIR")
    load_env
    cluster_stop_all
}

# --------------------------------------------------------------- verbs -----

set_layout() {
    ESS_RABBIT_PIDFILE="$DIR/rabbit/rabbit.pid"
    ESS_PG_DATA="$DIR/pg"
    ESS_PG_SOCKDIR="$DIR/pgsock"
    ESS_PG_LOG="$DIR/pg.log"
}

check_dir_reachable() {
    local user
    for user in rabbitmq postgres; do
        if [ "$(id -u)" = 0 ] && ! runuser -u "$user" -- test -x "$DIR"; then
            die "user $user cannot reach $DIR (a parent directory is not searchable)"
        fi
    done
}

cmd_up() {
    ensure_packages
    mkdir -p "$DIR"
    DIR=$(readlink -f "$DIR")
    check_dir_reachable
    if [ -f "$DIR/env" ]; then
        load_env
        set_layout
        if rabbit_running && pg_running; then
            say "already up ($DIR/env)"
            echo "$DIR/env"
            return 0
        fi
        say "stale stack in $DIR: stopping what is left and starting fresh"
        cmd_down_loaded
    fi
    rm -rf "${DIR:?}/rabbit" "$DIR/pg" "$DIR/pgsock" "${DIR:?}/bin" "$DIR/env" "$DIR/pg.log" "$DIR/pg-initdb.log"
    set_layout
    # A failed `up` leaves nothing running behind it.
    trap 'if [ $? -ne 0 ]; then stop_rabbit_quiet; stop_pg; fi' EXIT
    read -r ESS_AMQP_PORT ESS_RABBIT_DIST_PORT ESS_EPMD_PORT ESS_PG_PORT ESS_AMQPS_PORT \
        < <(free_ports 5)
    ESS_RABBIT_NODE="ess-test-$$@localhost"
    write_env
    write_wrappers
    rabbit_init
    pg_init
    start_pg
    pg_create_db
    start_rabbit
    trap - EXIT
    echo "$DIR/env"
}

cmd_down_loaded() {
    set_layout
    stop_rabbit
    stop_pg
}

cmd_down() {
    if [ ! -f "$DIR/env" ]; then
        say "nothing to stop in $DIR"
        return 0
    fi
    DIR=$(readlink -f "$DIR")
    load_env
    cmd_down_loaded
}

cmd_status() {
    local rc=0
    load_env
    set_layout
    if rabbit_running; then
        echo "rabbitmq  up    $ESS_RABBIT_NODE 127.0.0.1:$ESS_AMQP_PORT pid $(read_pid "$ESS_RABBIT_PIDFILE")"
    else
        echo "rabbitmq  down  $ESS_RABBIT_NODE 127.0.0.1:$ESS_AMQP_PORT"
        rc=3
    fi
    if pg_running; then
        echo "postgres  up    127.0.0.1:$ESS_PG_PORT pid $(read_pid "$ESS_PG_DATA/postmaster.pid")"
    else
        echo "postgres  down  127.0.0.1:$ESS_PG_PORT"
        rc=3
    fi
    return $rc
}

[ $# -ge 2 ] || usage
VERB=$1
DIR=$2
shift 2

case "$VERB" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
restart-rabbit) load_env; set_layout; stop_rabbit; start_rabbit ;;
restart-pg) load_env; set_layout; stop_pg; start_pg ;;
stop-rabbit) load_env; set_layout; stop_rabbit ;;
start-rabbit) load_env; set_layout; start_rabbit ;;
stop-pg) load_env; set_layout; stop_pg ;;
start-pg) load_env; set_layout; start_pg ;;
ctl) load_env; set_layout; as_rabbit "$RMQ_BIN/rabbitmqctl" -n "$ESS_RABBIT_NODE" "$@" ;;
standby-up) load_env; set_layout; cmd_standby_up ;;
standby-promote) load_env; set_layout; cmd_standby_promote ;;
standby-down) load_env; set_layout; cmd_standby_down ;;
cluster-up) cmd_cluster_up ;;
cluster-down) cmd_cluster_down ;;
cluster-stop-node) [ $# -eq 1 ] || usage; load_env; cluster_select "$1"; stop_rabbit ;;
cluster-start-node) [ $# -eq 1 ] || usage; load_env; cluster_start_node "$1" ;;
cluster-ctl) [ $# -ge 1 ] || usage; load_env; cluster_select "$1"; shift; as_rabbit "$RMQ_BIN/rabbitmqctl" -n "$ESS_RABBIT_NODE" "$@" ;;
*) usage ;;
esac
