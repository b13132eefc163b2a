#!/usr/bin/env bash
# rabbitmq-private.sh runs private RabbitMQ nodes on 127.0.0.1 from the
# installed rabbitmq-server, for tests: a single node, or a cluster of a
# few nodes joined together. Each node has its own name, ports, data, log
# and configuration under a directory the caller gives, and leaves the
# machine's own broker (rabbit@localhost on 5672) alone.
#
# usage: scripts/rabbitmq-private.sh --dir DIR COMMAND [ARGS]
#
#   start NAME AMQP_PORT [DIST_PORT]
#       starts node NAME@localhost listening on 127.0.0.1:AMQP_PORT (Erlang
#       distribution on DIST_PORT, default AMQP_PORT+20000), waits until it
#       is up and prints its URL. AMQP_PORT 0 picks a free port.
#   cluster NAME N BASE_PORT
#       starts nodes NAME-1 .. NAME-N on BASE_PORT .. BASE_PORT+N-1 (0:
#       free ports), joins NAME-2 .. NAME-N to NAME-1, and prints the
#       nodes' URLs as one comma-separated list.
#   stop [NAME...]
#       stops the named nodes, or every node under DIR: a clean stop first,
#       then a kill of whatever it started that is still running.
#   status
#       prints every node under DIR with its URL and whether it answers.
#   url NAME / nodename NAME
#       prints a started node's URL / its full Erlang node name.
#
# DIR can also come from RELAY_RABBITMQ_DIR. It is created when missing.
#
# Why it is done this way (RabbitMQ 3.10 as packaged by Debian):
# - rabbitmq-server and rabbitmqctl run as root drop to the user rabbitmq
#   (su, keeping the environment but with HOME=/var/lib/rabbitmq): every
#   folder a node writes must belong to that user, and the nodes share the
#   Erlang cookie in that HOME with the machine's broker, so a plain
#   "rabbitmqctl -n NAME@localhost" reaches them. The cookie is only read.
# - "rabbitmq-server -detached" fails silently here; the server is run in
#   the background instead, its output in DIR/NAME/console.log.
# - The machine's /etc/rabbitmq files set the node name and port 5672;
#   every node gets its own env, config and advanced config files instead.
# - A node joins with stop_app, join_cluster, start_app.
set -euo pipefail

prog="$(basename "$0")"
log() { printf '[%s] %s\n' "$prog" "$*" >&2; }
die() { log "$*"; exit 1; }

dir="${RELAY_RABBITMQ_DIR:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir="${2:?--dir needs a directory}"; shift 2 ;;
    --dir=*) dir="${1#--dir=}"; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) break ;;
  esac
done
[ -n "$dir" ] || die "no directory: give --dir DIR or set RELAY_RABBITMQ_DIR"
[ $# -gt 0 ] || die "no command; see $prog --help"

host=localhost
startup_timeout="${RELAY_RABBITMQ_STARTUP_TIMEOUT:-180}"

ctl() { timeout 120 rabbitmqctl "$@"; }

port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port prints a port at or above $1 where both it and its
# distribution port (+20000) are free.
free_port() {
  local p="$1"
  while [ "$p" -lt 45535 ]; do
    if port_free "$p" && port_free $((p + 20000)); then
      echo "$p"
      return 0
    fi
    p=$((p + 1))
  done
  die "no free port from $1"
}

node_dir() { printf '%s/%s' "$dir" "$1"; }
node_url() { printf 'amqp://guest:guest@127.0.0.1:%s/' "$(cat "$(node_dir "$1")/port")"; }

# nodes lists the nodes under DIR.
nodes() {
  local f
  for f in "$dir"/*/port; do
    [ -e "$f" ] && basename "$(dirname "$f")"
  done
  return 0
}

# launch starts a node in the background and returns at once.
launch() {
  local name="$1" port="$2" dist="$3" nd
  nd="$(node_dir "$name")"
  id rabbitmq >/dev/null 2>&1 || die "there is no user rabbitmq (is rabbitmq-server installed?)"
  command -v rabbitmq-server >/dev/null || die "rabbitmq-server is not installed"
  [ "$(id -u)" = 0 ] || die "run as root: the server drops to the user rabbitmq"
  if [ -e "$nd/port" ] && ctl -n "$name@$host" ping -q >/dev/null 2>&1; then
    die "node $name@$host is already running"
  fi
  port_free "$port" || die "port $port is taken"
  port_free "$dist" || die "distribution port $dist is taken"
  rm -rf "$nd"
  mkdir -p "$nd/mnesia" "$nd/log"
  chmod 0755 "$dir"
  echo "$port" >"$nd/port"
  echo "$dist" >"$nd/dist_port"
  # Only what the node needs from the machine's env file: epmd on
  # loopback, should this node be the one that starts it.
  printf 'ERL_EPMD_ADDRESS=127.0.0.1\n' >"$nd/rabbitmq-env.conf"
  cat >"$nd/rabbitmq.conf" <<EOF
listeners.tcp.local = 127.0.0.1:$port
log.file.level = info
log.console = false
EOF
  printf '[].\n' >"$nd/enabled_plugins"
  printf '[].\n' >"$nd/advanced.config"
  chown -R rabbitmq:rabbitmq "$nd"
  (
    export RABBITMQ_CONF_ENV_FILE="$nd/rabbitmq-env.conf" \
      RABBITMQ_NODENAME="$name@$host" \
      RABBITMQ_NODE_PORT="$port" \
      RABBITMQ_DIST_PORT="$dist" \
      RABBITMQ_CONFIG_FILE="$nd/rabbitmq.conf" \
      RABBITMQ_ADVANCED_CONFIG_FILE="$nd/advanced.config" \
      RABBITMQ_ENABLED_PLUGINS_FILE="$nd/enabled_plugins" \
      RABBITMQ_MNESIA_BASE="$nd/mnesia" \
      RABBITMQ_LOG_BASE="$nd/log" \
      RABBITMQ_PID_FILE="$nd/pid" \
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    cd "$nd"
    setsid rabbitmq-server </dev/null >"$nd/console.log" 2>&1 &
    echo $! >"$nd/launcher.pid"
  )
  log "starting $name@$host on 127.0.0.1:$port (distribution $dist)"
}

# await waits for a launched node to be up, or dies with its last output.
# await_startup gives up at once while the node is not yet reachable, so
# it comes after the first answer to a ping.
await() {
  local name="$1" nd deadline
  nd="$(node_dir "$name")"
  deadline=$(( $(date +%s) + startup_timeout ))
  until rabbitmqctl -n "$name@$host" -q ping >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ] || ! kill -0 "$(cat "$nd/launcher.pid")" 2>/dev/null; then
      fail_start "$name"
    fi
    sleep 1
  done
  if ! timeout "$startup_timeout" rabbitmqctl -n "$name@$host" -q await_startup --timeout "$startup_timeout" >/dev/null 2>&1; then
    fail_start "$name"
  fi
}

fail_start() {
  log "node $1@$host did not start; its output:"
  tail -n 30 "$(node_dir "$1")/console.log" >&2 || true
  stop_node "$1"
  exit 1
}

# started lists the processes a node's launch started, found by the data
# folder in their environment: the server drops to another user in a
# session of its own, out of reach of the launcher's process group. epmd
# is left alone: a node that finds none starts one that outlives it, and
# other nodes (the machine's broker) may be registered with it by now.
started() {
  local nd="$1" f pid
  for f in /proc/[0-9]*/environ; do
    pid="${f#/proc/}"
    pid="${pid%/environ}"
    [ "$pid" != $$ ] || continue
    if { tr '\0' '\n' <"$f"; } 2>/dev/null | grep -qxF "RABBITMQ_MNESIA_BASE=$nd/mnesia"; then
      [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = epmd ] || echo "$pid"
    fi
  done
}

# stop_node stops a node cleanly if it can, then makes sure nothing it
# started is left.
stop_node() {
  local name="$1" nd pids
  nd="$(node_dir "$name")"
  [ -e "$nd/port" ] || die "no node $name under $dir"
  if [ -s "$nd/pid" ]; then
    ctl -n "$name@$host" -q stop "$nd/pid" >/dev/null 2>&1 || true
  fi
  pids="$(started "$nd")"
  if [ -n "$pids" ]; then
    kill -TERM $pids 2>/dev/null || true
    for _ in $(seq 1 50); do
      pids="$(started "$nd")"
      [ -n "$pids" ] || break
      sleep 0.1
    done
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
  fi
  rm -f "$nd/pid" "$nd/launcher.pid"
  log "stopped $name@$host"
}

cmd="$1"
shift
mkdir -p "$dir"
case "$cmd" in
  start)
    [ $# -ge 2 ] || die "usage: $prog --dir DIR start NAME AMQP_PORT [DIST_PORT]"
    name="$1" port="$2"
    [ "$port" = 0 ] && port="$(free_port 5700)"
    dist="${3:-$((port + 20000))}"
    began=$(date +%s)
    launch "$name" "$port" "$dist"
    await "$name"
    log "$name@$host up in $(( $(date +%s) - began ))s"
    node_url "$name"
    echo
    ;;
  cluster)
    [ $# -eq 3 ] || die "usage: $prog --dir DIR cluster NAME N BASE_PORT"
    name="$1" n="$2" base="$3"
    [ "$n" -ge 1 ] || die "a cluster needs at least one node"
    began=$(date +%s)
    port=$base
    [ "$base" = 0 ] && port="$(free_port 5710)"
    for i in $(seq 1 "$n"); do
      [ "$base" = 0 ] && [ "$i" -gt 1 ] && port="$(free_port "$port")"
      launch "$name-$i" "$port" $((port + 20000))
      port=$((port + 1))
    done
    for i in $(seq 1 "$n"); do
      await "$name-$i"
    done
    log "$n nodes up in $(( $(date +%s) - began ))s; joining them"
    for i in $(seq 2 "$n"); do
      node="$name-$i@$host"
      ctl -n "$node" -q stop_app >/dev/null
      ctl -n "$node" -q join_cluster "$name-1@$host" >/dev/null
      ctl -n "$node" -q start_app >/dev/null
      ctl -n "$node" -q await_startup >/dev/null
    done
    log "cluster $name of $n nodes up in $(( $(date +%s) - began ))s"
    urls=""
    for i in $(seq 1 "$n"); do
      urls="${urls:+$urls,}$(node_url "$name-$i")"
    done
    echo "$urls"
    ;;
  stop)
    if [ $# -eq 0 ]; then
      set -- $(nodes)
    fi
    for name in "$@"; do
      stop_node "$name"
    done
    ;;
  status)
    for name in $(nodes); do
      if ctl -n "$name@$host" -q ping >/dev/null 2>&1; then
        state=running
      else
        state=down
      fi
      printf '%s@%s\t%s\t%s\n' "$name" "$host" "$(node_url "$name")" "$state"
    done
    ;;
  url)
    [ $# -eq 1 ] || die "usage: $prog --dir DIR url NAME"
    [ -e "$(node_dir "$1")/port" ] || die "no node $1 under $dir"
    node_url "$1"
    echo
    ;;
  nodename)
    [ $# -eq 1 ] || die "usage: $prog --dir DIR nodename NAME"
    echo "$1@$host"
    ;;
  *)
    die "unknown command $cmd; see $prog --help"
    ;;
esac
