#!/bin/sh
# The nginx drill's sandbox: a fresh config, temp folders and logs in a folder of its own
# (Debian's /etc/nginx, /var/lib/nginx and its service are not used).
#   sandbox.sh up DIR PROXY_PORT BACKEND_A BACKEND_B "error timeout"|off [NGINX]
#   sandbox.sh down DIR
set -eu
case "${1:-}" in
up)
  dir=$2 proxy_port=$3 backend_a=$4 backend_b=$5 next_upstream=$6 nginx=${7:-nginx}
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
        listen 127.0.0.1:$proxy_port;
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
  "$nginx" -q -t -p "$dir" -e "$dir/logs/error.log" -c "$dir/nginx.conf"
  ;;
down)
  rm -rf "$2"
  ;;
*)
  echo "usage: sandbox.sh up DIR PROXY_PORT BACKEND_A BACKEND_B \"error timeout\"|off [NGINX] | down DIR" >&2
  exit 2
  ;;
esac
