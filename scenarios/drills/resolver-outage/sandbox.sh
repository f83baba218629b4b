#!/bin/sh
# The resolver-outage drill's sandbox: one nginx config with two proxies in front of the same
# backend, found by name, in a folder of its own (Debian's /etc/nginx and service are not used).
#   sandbox.sh up DIR DNS_ADDR PROXY_ADDR RE_RESOLVE_PORT ONCE_PORT BACKEND_PORT
#   sandbox.sh down DIR
# The re-resolving proxy asks DNS_ADDR for `backend.internal` whenever its answer is older than
# a second (`resolver ... valid=1s` and a variable in `proxy_pass`); the resolved-once proxy names
# it in an `upstream` block, which nginx resolves once, at start, through the system resolver (the
# proxy host's /etc/resolv.conf, which must name DNS_ADDR).
set -eu
case "${1:-}" in
up)
  dir=$2 dns=$3 proxy=$4 re_resolve=$5 once=$6 backend_port=$7
  rm -rf "$dir"
  mkdir -p "$dir/logs" "$dir/tmp"
  cat >"$dir/nginx.conf" <<CFG
# Written by scenarios/drills/resolver-outage/sandbox.sh for one drill run.
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;

events {
    worker_connections 512;
}

http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    # nginx's own DNS client, for names in variables: answers kept 1 s, a query given 1 s.
    resolver $dns valid=1s ipv6=off;
    resolver_timeout 1s;

    # The resolved-once proxy's upstream: its server's name is looked up when nginx starts. (An
    # upstream of its own name: a `proxy_pass http://backend.internal:PORT` would make an implicit
    # upstream of that name, which the re-resolving proxy's variable would then match instead of
    # resolving.)
    upstream resolved_once {
        server backend.internal:$backend_port;
    }

    server {
        # Re-resolves: the name is in a variable, looked up when its answer is older than 1 s.
        listen $proxy:$re_resolve;
        location / {
            set \$upstream http://backend.internal:$backend_port;
            proxy_pass \$upstream;
            proxy_connect_timeout 1s;
        }
    }

    server {
        # Resolved once: the upstream's server name is looked up when nginx starts, never again.
        listen $proxy:$once;
        location / {
            proxy_pass http://resolved_once;
            proxy_connect_timeout 1s;
        }
    }
}
CFG
  ;;
down)
  rm -rf "$2"
  ;;
*)
  echo "usage: sandbox.sh up DIR DNS_ADDR PROXY_ADDR RE_RESOLVE_PORT ONCE_PORT BACKEND_PORT | down DIR" >&2
  exit 2
  ;;
esac
