#!/usr/bin/env bash
# A private Docker daemon for builds and `make e2e`:  images/dockerd.sh start|stop|env
# Its data root lies under $E2E_CACHE (default /var/cache/divtune-e2e), so the base image and the built images
# survive between runs on this machine.  No bridge network or iptables here: containers use host networking.
# An already running daemon named by DOCKER_HOST is used as it is (start and stop then do nothing).
set -euo pipefail
CACHE=${E2E_CACHE:-/var/cache/divtune-e2e}
RUN=$CACHE/run
SOCK=$RUN/docker.sock
cmd=${1:-env}

ours() { [ -z "${DOCKER_HOST:-}" ] || [ "${DOCKER_HOST}" = "unix://$SOCK" ]; }

case "$cmd" in
  env) if ours; then echo "export DOCKER_HOST=unix://$SOCK"; else echo "export DOCKER_HOST=$DOCKER_HOST"; fi ;;
  start)
    ours || { docker info >/dev/null; exit 0; }
    if [ -S "$SOCK" ] && DOCKER_HOST=unix://$SOCK docker info >/dev/null 2>&1; then exit 0; fi
    command -v dockerd >/dev/null || {
        echo "[e2e] installing docker.io and debootstrap (Debian)" >&2
        apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io debootstrap >&2; }
    mkdir -p "$RUN" "$CACHE/docker"
    nohup dockerd --iptables=false --ip-masq=false --bridge=none --exec-opt native.cgroupdriver=cgroupfs \
        --host "unix://$SOCK" --data-root "$CACHE/docker" --exec-root "$RUN/exec" --pidfile "$RUN/dockerd.pid" \
        >"$RUN/dockerd.log" 2>&1 &
    for _ in $(seq 60); do
        DOCKER_HOST=unix://$SOCK docker info >/dev/null 2>&1 && exit 0
        sleep 1
    done
    echo "error: dockerd did not start; see $RUN/dockerd.log" >&2; tail -5 "$RUN/dockerd.log" >&2; exit 1 ;;
  stop)
    ours || exit 0
    [ -f "$RUN/dockerd.pid" ] || exit 0
    pid=$(cat "$RUN/dockerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 1; done
    echo "warning: dockerd $pid still running" >&2 ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
