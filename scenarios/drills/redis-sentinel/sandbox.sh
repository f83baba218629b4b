#!/bin/sh
# The sandbox of the Redis drills: fresh config files and data directories for a master, a replica
# and three sentinels, written before each run (Sentinel rewrites its config file, so it must be
# fresh and writable; Debian's service files and /etc/redis are not used). Each server binds the
# address it is given: 127.0.0.1 by default, a lab host's address when the drill's `<ROLE>_ADDR`
# vars say so (then `protected-mode no` lets the others reach it).
#
#   sandbox.sh up DIR MASTER_NAME MASTER_ADDR:PORT REPLICA_ADDR:PORT SENTINEL_ADDR:PORT...
#   sandbox.sh down DIR     kill what is left (by pidfile) and print the writers' figures
#
# The servers themselves are started by the scenario's `setup` as background commands, so chaosctl
# stops them on every path; `down` is the teardown's second line of defence.
set -eu

cmd=$1 dir=$2
shift 2
marker=.chaos-redis-drill

case $cmd in
up)
  name=$1 master=$2 replica=$3
  shift 3
  if [ -e "$dir" ]; then
    # Never wipe a folder we did not make.
    [ -e "$dir/$marker" ] || { echo "refusing to reuse $dir: not a drill folder (no $marker)" >&2; exit 1; }
    rm -rf "$dir"
  fi
  mkdir -p "$dir"
  touch "$dir/$marker"
  server() { # NAME ADDR:PORT [EXTRA CONFIG LINE]
    mkdir -p "$dir/$1"
    {
      echo "port ${2##*:}"
      echo "bind ${2%:*}"
      echo "protected-mode no"
      echo "daemonize no"
      echo "dir $dir/$1"
      echo "pidfile $dir/$1.pid"
      echo "logfile \"\""
      echo "save \"\""
      echo "appendonly no"
      # Redis 7 waits 5 s before a diskless full sync, to batch replicas; a drill cannot wait.
      echo "repl-diskless-sync-delay 0"
      [ $# -lt 3 ] || echo "$3"
    } >"$dir/$1.conf"
  }
  server master "$master"
  server replica "$replica" "replicaof ${master%:*} ${master##*:}"
  i=1
  for sentinel in "$@"; do
    mkdir -p "$dir/sentinel-$i"
    cat >"$dir/sentinel-$i.conf" <<CONF
port ${sentinel##*:}
bind ${sentinel%:*}
protected-mode no
daemonize no
dir $dir/sentinel-$i
pidfile $dir/sentinel-$i.pid
logfile ""
sentinel monitor $name ${master%:*} ${master##*:} 2
sentinel down-after-milliseconds $name 1000
sentinel failover-timeout $name 10000
sentinel parallel-syncs $name 1
CONF
    i=$((i + 1))
  done
  echo "sandbox in $dir: master $master, replica $replica, sentinels $*"
  ;;
down)
  for pidfile in "$dir"/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if grep -q redis "/proc/$pid/cmdline" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null && echo "killed leftover $(basename "$pidfile" .pid) (pid $pid)"
    fi
  done
  for summary in "$dir"/*.summary.json; do
    [ -e "$summary" ] || continue
    echo "$(basename "$summary" .summary.json): $(cat "$summary")"
  done
  ;;
*)
  echo "usage: sandbox.sh up DIR MASTER_NAME MASTER_ADDR:PORT REPLICA_ADDR:PORT SENTINEL_ADDR:PORT... | down DIR" >&2
  exit 2
  ;;
esac
