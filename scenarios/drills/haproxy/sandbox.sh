#!/bin/sh
# The HAProxy drill's sandbox: a fresh config in a folder of its own (Debian's
# /etc/haproxy and its service are not used).
#   sandbox.sh up DIR PROXY BACKEND_A BACKEND_B redispatch|no-redispatch [HAPROXY]
#   sandbox.sh down DIR
# PROXY is where HAProxy listens, ADDR:PORT (a bare PORT means 127.0.0.1:PORT); BACKEND_A and
# BACKEND_B are the servers' ADDR:PORT.
set -eu
case "${1:-}" in
up)
  dir=$2 proxy=$3 backend_a=$4 backend_b=$5 mode=$6 haproxy=${7:-haproxy}
  case "$mode" in
  redispatch) redispatch="option redispatch" ;;
  no-redispatch) redispatch="no option redispatch" ;;
  *) echo "sandbox.sh: mode must be redispatch or no-redispatch, not $mode" >&2; exit 2 ;;
  esac
  case "$proxy" in
  *:*) ;;
  *) proxy=127.0.0.1:$proxy ;;
  esac
  rm -rf "$dir"
  mkdir -p "$dir"
  cat >"$dir/haproxy.cfg" <<CFG
# Written by scenarios/drills/haproxy/sandbox.sh for one drill run.
global
    maxconn 512

defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    # A failed connection is retried up to 3 times; with redispatch the last retry may go to
    # another server, without it every retry goes to the same (dead) one.
    retries 3
    $redispatch

frontend web
    bind $proxy
    default_backend demo

backend demo
    balance roundrobin
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
  echo "usage: sandbox.sh up DIR PROXY BACKEND_A BACKEND_B redispatch|no-redispatch | down DIR" >&2
  exit 2
  ;;
esac
