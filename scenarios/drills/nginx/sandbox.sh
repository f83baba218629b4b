#!/bin/sh
# The nginx drill's sandbox: a fresh config, temp folders and logs in a folder of its own
# (Debian's /etc/nginx, /var/lib/nginx and its service are not used).
#   sandbox.sh up DIR PROXY BACKEND_A BACKEND_B "error timeout"|off [NGINX [ON_PROXY]]
#   sandbox.sh down DIR
# PROXY is where nginx listens, ADDR:PORT (a bare PORT means 127.0.0.1:PORT); BACKEND_A and
# BACKEND_B are the upstream servers' ADDR:PORT. ON_PROXY is the drill's command prefix that runs
# nginx where PROXY is (e.g. `ip netns exec NS`): `nginx -t` binds the listen address, so the
# check runs there too.
set -eu
case "${1:-}" in
up)
  dir=$2 proxy=$3 backend_a=$4 backend_b=$5 next_upstream=$6 nginx=${7:-nginx} on_proxy=${8:-}
  case "$proxy" in
  *:*) ;;
  *) proxy=127.0.0.1:$proxy ;;
  esac
  rm -rf "$dir"
  mkdir -p "$dir/logs" "$dir/tmp"
  cat >"$dir/nginx.conf" <<CFG
# Written by scenarios/drills/nginx/sandbox.sh for one drill run.
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

    upstream demo {
        # nginx's defaults, written out: one failure takes a server out for 10 s, after which
        # one request tries it again.
        server $backend_a max_fails=1 fail_timeout=10s;
        server $backend_b max_fails=1 fail_timeout=10s;
    }

    server {
        listen $proxy;
        location / {
            proxy_pass http://demo;
            proxy_connect_timeout 1s;
            # What a request that failed on one server may do: try the next one, or not.
            proxy_next_upstream $next_upstream;
        }
    }
}
CFG
  # Fails here, before any server starts, when the config is wrong.
  # shellcheck disable=SC2086 # the prefix is words
  $on_proxy "$nginx" -q -t -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf"
  ;;
down)
  rm -rf "$2"
  ;;
*)
  echo "usage: sandbox.sh up DIR PROXY BACKEND_A BACKEND_B \"error timeout\"|off [NGINX] | down DIR" >&2
  exit 2
  ;;
esac
