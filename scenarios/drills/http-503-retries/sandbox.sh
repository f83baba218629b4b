#!/bin/sh
# The http-503-retries drill's sandbox: an HAProxy config in a folder of its own (Debian's
# /etc/haproxy and its service are not used).
#   sandbox.sh up DIR PROXY BACKEND_A BACKEND_B retry-503|no-retry-503 [HAPROXY]
#   sandbox.sh down DIR
# PROXY is where HAProxy listens, ADDR:PORT (a bare PORT means 127.0.0.1:PORT); BACKEND_A and
# BACKEND_B are the servers' ADDR:PORT.
set -eu
case "${1:-}" in
up)
  dir=$2 proxy=$3 backend_a=$4 backend_b=$5 mode=$6 haproxy=${7:-haproxy}
  case "$mode" in
  retry-503) retry_on="retry-on 503 conn-failure" ;;
  no-retry-503) retry_on="retry-on conn-failure" ;;
  *) echo "sandbox.sh: mode must be retry-503 or no-retry-503, not $mode" >&2; exit 2 ;;
  esac
  case "$proxy" in
  *:*) ;;
  *) proxy=127.0.0.1:$proxy ;;
  esac
  rm -rf "$dir"
  mkdir -p "$dir"
  cat >"$dir/haproxy.cfg" <<CFG
# Written by scenarios/drills/http-503-retries/sandbox.sh for one drill run.
global
    maxconn 512

defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    # What a failed attempt may do: try again (twice), each time on another server (redispatch
    # on every retry); with retry-503 a 503 answer counts as failed, without it only a failed
    # connection does.
    retries 2
    $retry_on
    option redispatch 1
    # A new server connection per request: the http fault redirects new connections only, so
    # connections HAProxy kept open from before the fault would bypass it.
    option http-server-close

frontend web
    bind $proxy
    default_backend demo

backend demo
    balance roundrobin
    # TCP checks: the fault answers HTTP, so the servers stay up and only the retries help.
    server a $backend_a check inter 500 fall 2 rise 2
    server b $backend_b check inter 500 fall 2 rise 2
CFG
  # Fails here, before any server starts, when the config is wrong.
  "$haproxy" -c -q -f "$dir/haproxy.cfg"
  ;;
down)
  rm -rf "$2"
  ;;
*)
  echo "usage: sandbox.sh up DIR PROXY BACKEND_A BACKEND_B retry-503|no-retry-503 [HAPROXY] | down DIR" >&2
  exit 2
  ;;
esac
