#!/bin/sh
# The sandbox of the Redis full-disk drill: a fresh config for one Redis server that saves an RDB
# snapshot every second that sees a write (`save 1 1`), and the small filesystem its data directory
# lives on, which the drill fills to 100 %. Never a real disk: `up` mounts a tmpfs of SIZE at
# DATA_DIR (root only) and `down` unmounts it, unless SIZE is `none`: then DATA_DIR must already be
# on a small filesystem made for this.
#
#   sandbox.sh up DIR ADDR:PORT DATA_DIR SIZE|none STOP_WRITES_ON_BGSAVE_ERROR
#   sandbox.sh down DIR     kill what is left (by pidfile), unmount, print the writer's figures
set -eu

cmd=$1 dir=$2
shift 2
marker=.chaos-redis-drill

# The tmpfs `up` mounted, by the path it wrote to DIR/.mounted.
unmount() {
  if [ -e "$dir/.mounted" ]; then
    at=$(cat "$dir/.mounted")
    { umount "$at" || umount -l "$at"; } && rm -f "$dir/.mounted" && echo "unmounted the tmpfs at $at"
  fi
}

case $cmd in
up)
  addr=$1 data=$2 size=$3 stop_writes=$4
  if [ -e "$dir" ]; then
    # Never wipe a folder we did not make.
    [ -e "$dir/$marker" ] || { echo "refusing to reuse $dir: not a drill folder (no $marker)" >&2; exit 1; }
    unmount
    rm -rf "$dir"
  fi
  mkdir -p "$dir"
  touch "$dir/$marker"
  if [ "$size" != none ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "the drill fills the filesystem of Redis's data directory to 100 %; so as never to fill a real disk it mounts a $size tmpfs at $data, which needs root. Run it as root, or give REDIS_DATA_DIR on a small filesystem made for this and REDIS_DATA_TMPFS=none (docs/drills/redis-full-disk.md)" >&2
      exit 1
    fi
    mkdir -p "$data"
    # A tmpfs of ours left there by a run that was killed: this one mounts its own.
    if grep -q "^chaos-redis-full-disk $data tmpfs " /proc/self/mounts; then umount "$data"; fi
    mount -t tmpfs -o "size=$size,mode=0755" chaos-redis-full-disk "$data"
    echo "$data" >"$dir/.mounted"
  fi
  cat >"$dir/master.conf" <<CONF
port ${addr##*:}
bind ${addr%:*}
protected-mode no
daemonize no
dir $data
dbfilename chaos-drill-dump.rdb
pidfile $dir/master.pid
logfile ""
appendonly no
save 1 1
stop-writes-on-bgsave-error $stop_writes
CONF
  echo "sandbox in $dir: redis $addr, data in $data ($(df -h "$data" | awk 'NR == 2 { print $2 " " $1 }')), stop-writes-on-bgsave-error $stop_writes"
  ;;
down)
  if [ -e "$dir/master.pid" ]; then
    pid=$(cat "$dir/master.pid")
    if grep -q redis "/proc/$pid/cmdline" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null && echo "killed leftover master (pid $pid)"
      # Its descriptors on the tmpfs go with it; give the kernel a moment before the unmount.
      i=0
      while [ -e "/proc/$pid" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    fi
  fi
  unmount
  for summary in "$dir"/*.summary.json; do
    [ -e "$summary" ] || continue
    echo "$(basename "$summary" .summary.json): $(cat "$summary")"
  done
  ;;
*)
  echo "usage: sandbox.sh up DIR ADDR:PORT DATA_DIR SIZE|none yes|no | down DIR" >&2
  exit 2
  ;;
esac
