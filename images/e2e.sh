#!/usr/bin/env bash
# `make e2e`: the whole toy DAG in real containers, from nothing.
#   1. a private Docker daemon (Debian's docker.io, installed if missing; data root under $E2E_CACHE)
#   2. a Debian bookworm + Python 3.11 base made here with debootstrap (no registry), cached by content
#   3. the CPU variants of the trainer and eval images and the MLflow server image, cached by content
#   4. the DAG under kfp.local's DockerRunner (pipelines/containers.py): the MLflow image on loopback with basic auth,
#      each step in its own container from its own image as the image's non-root user, isolation checked
#      with an S3 API (moto) for the models bucket and a cache volume prepared by manifests/cache-pvc.yaml's Job;
#      the train step is killed after its first checkpoint (E2E_KILL=0: not), the exit handler must leave the MLflow
#      parent run FAILED, and the re-run must resume from the checkpoint and register the champion
#   5. the run summary with each step's image; the server container and the daemon are stopped on the way out
# Needs root (dockerd, debootstrap) and the dev venv (.venv; `make e2e` builds it first).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then  # a daemon, debootstrap and Debian packages need root: sudo when it asks no password
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then exec sudo -n --preserve-env "$0" "$@"; fi
    echo "error: make e2e starts a Docker daemon and runs debootstrap: run it as root (or with password-less sudo)" >&2
    exit 2
fi
export E2E_CACHE=${E2E_CACHE:-/var/cache/divtune-e2e}
t0=$(date +%s)
stamp() { echo "[e2e] $(( $(date +%s) - t0 ))s: $*" >&2; }

started=""
cleanup() {
    rc=$?
    if [ -n "$started" ]; then images/dockerd.sh stop || true; stamp "docker daemon stopped"; fi
    exit $rc
}
trap cleanup EXIT
eval "$(images/dockerd.sh env)"
if ! docker info >/dev/null 2>&1; then started=1; fi
nice -n 10 images/dockerd.sh start
stamp "docker daemon at $DOCKER_HOST"

base=$(nice -n 10 images/base.sh)
stamp "base image $base"

registry=localhost/divtune
out=$(nice -n 10 images/build.sh --variant cpu --base "$base" --registry "$registry" trainer eval mlflow)
echo "$out" | sed 's/^/[e2e]   /' >&2
ref() { echo "$out" | awk -v n="$1" '$1 == n {print $2}'; }
trainer=$(ref trainer) mlflow=$(ref mlflow)
stamp "images ready"

# the components name the images just built (DIVTUNE_REGISTRY / DIVTUNE_IMAGE_TAG, see components/_images.py)
host_home=$(mktemp -d "${TMPDIR:-/tmp}/divtune-e2e-host.XXXXXX")
set +e
DIVTUNE_REGISTRY=$registry DIVTUNE_IMAGE_TAG=${trainer##*:} DIVTUNE_HOME=$host_home HF_HUB_OFFLINE=1 \
    nice -n 10 .venv/bin/python -m divtune_kfp.pipelines.containers --preset toy --mlflow-image "$mlflow" \
    $( [ "${E2E_KILL:-train}" = 0 ] || echo --kill-step "${E2E_KILL:-train}" ) "$@"
rc=$?
set -e
rm -rf "$host_home"
stamp "DAG $( [ $rc = 0 ] && echo passed || echo "FAILED (exit $rc)")"
exit $rc
