#!/usr/bin/env bash
# Build divtune's images:  images/build.sh [--variant gpu|cpu] [--base REF] [--registry R] [--tag T] IMAGE...
#   IMAGE: trainer eval serve mlflow.  Each is tagged REGISTRY/divtune-IMAGE:TAG (TAG default: the commit, with
#   -cpu for the CPU variant) and labelled with a content key (its Dockerfile, the staged context, the base image,
#   the variant, the registry and tag); an image whose label matches is not rebuilt.
#   The context is staged from the working tree's tracked and unignored files (the package, configs, images/), plus,
#   for --variant cpu, the CPU torch wheel(s) from $CPU_WHEELS (default: pip's find-links directory).
# Prints one line per image: IMAGE REF built|cached SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${E2E_CACHE:-/var/cache/divtune-e2e}
variant=gpu base="" registry="" tag=""
while [ $# -gt 0 ]; do
    case "$1" in
        --variant) variant=$2; shift 2 ;;
        --base) base=$2; shift 2 ;;
        --registry) registry=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || set -- trainer eval serve mlflow
case "$variant" in gpu|cpu) ;; *) echo "--variant must be gpu or cpu" >&2; exit 2 ;; esac
registry=${registry:-$(sed -n 's/^registry:[[:space:]]*\([^[:space:]#]*\).*/\1/p' configs/images.yaml)}
if [ -z "$tag" ]; then
    tag=$(git rev-parse --short=12 HEAD)
    git diff --quiet HEAD -- . 2>/dev/null || tag=$tag-dirty
    [ "$variant" = cpu ] && tag=$tag-cpu
fi

# the staged context, shared by every image of this call
ctx=$(mktemp -d "${TMPDIR:-/tmp}/divtune-ctx.XXXXXX"); trap 'rm -rf "$ctx"' EXIT
# (of images/ only what the Dockerfiles copy: editing a build script does not invalidate the images)
git ls-files -co --exclude-standard -- pyproject.toml README.md divtune components pipelines configs manifests/kserve-vllm.yaml \
    'images/*.Dockerfile' 'images/requirements-*.lock' 'images/*-entrypoint.*' \
    | while read -r f; do [ -f "$f" ] && printf '%s\0' "$f"; done | xargs -0 cp --parents -t "$ctx"
mkdir -p "$ctx/wheels" "$ctx/certs"
# a TLS-intercepting proxy's CA for pip inside the build (build stage only; never in an image's final layers)
ca=${BUILD_CA_BUNDLE:-${PIP_CERT:-${SSL_CERT_FILE:-}}}
if [ -n "$ca" ] && [ -s "$ca" ]; then cp "$ca" "$ctx/certs/ca.crt"; else : > "$ctx/certs/ca.crt"; fi
if [ "$variant" = cpu ]; then
    wheels=${CPU_WHEELS:-$(pip config get global.find-links 2>/dev/null || echo "${PIP_FIND_LINKS:-}")}
    ls "$wheels"/torch-*+cpu-*.whl >/dev/null 2>&1 || { echo "error: no CPU torch wheel in '$wheels' (set CPU_WHEELS)" >&2; exit 1; }
    for w in "$wheels"/torch-*+cpu-*.whl; do ln "$w" "$ctx/wheels/" 2>/dev/null || cp "$w" "$ctx/wheels/"; done
fi
ctx_sum=$(cd "$ctx" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64)

base_args=()
if [ -n "$base" ]; then
    base_id=$(docker image inspect -f '{{.Id}}' "$base")
    base_args=(--build-arg "BASE=$base")
else
    base_id=$(sed -n 's/^ARG BASE=//p' images/trainer.Dockerfile | head -1)
fi

for name in "$@"; do
    df=images/$name.Dockerfile
    [ -f "$df" ] || { echo "error: no $df" >&2; exit 2; }
    case "$name" in eval) repo=divtune-eval ;; *) repo=divtune-$name ;; esac
    v=$variant; [ "$name" = mlflow ] && v=none
    t=$tag; [ "$name" = mlflow ] && t=${tag%-cpu}
    ref=$registry/$repo:$t
    key=$(printf '%s\n' "$(sha256sum "$df")" "$ctx_sum" "$base_id" "$v" "$registry" "$t" | sha256sum | cut -c1-24)
    start=$(date +%s)
    if [ "$(docker image inspect -f '{{index .Config.Labels "divtune.content-key"}}' "$ref" 2>/dev/null)" = "$key" ]; then
        echo "$name $ref cached $(( $(date +%s) - start ))"
        continue
    fi
    echo "[build] $ref (variant $v, base ${base:-default})" >&2
    if grep -q '^FROM .* AS deps$' "$df"; then
        # the dependency stage, tagged by what it is made of: untagged, the prune below would drop it, and the
        # next code change would reinstall every locked package (minutes) instead of rebuilding the last layers
        dkey=$(printf '%s\n' "$(sed -n '1,/^FROM deps/p' "$df" | sha256sum)" \
            "$(cd "$ctx" && find "images/requirements-$v.lock" wheels certs -type f -print0 2>/dev/null \
               | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum)" "$base_id" "$v" | sha256sum | cut -c1-16)
        deps=localhost/divtune-build-cache/$repo-deps:$v-$dkey
        docker image inspect "$deps" >/dev/null 2>&1 || docker build --network host -f "$ctx/$df" "${base_args[@]}" \
            --build-arg "VARIANT=$v" --target deps --label "divtune.build-cache=$repo" -t "$deps" "$ctx" >&2
        # older dependency stages of this image go once replaced
        docker images --filter "label=divtune.build-cache=$repo" --format '{{.Repository}}:{{.Tag}}' \
            | grep -vxF "$deps" | xargs -r docker rmi >/dev/null 2>&1 || true
    fi
    docker build --network host -f "$ctx/$df" "${base_args[@]}" --build-arg "VARIANT=$v" \
        --build-arg "IMAGE_REGISTRY=$registry" --build-arg "IMAGE_TAG=$t" \
        --label "divtune.content-key=$key" --label "divtune.variant=$v" --label "org.opencontainers.image.revision=$(git rev-parse HEAD)" \
        -t "$ref" "$ctx" >&2
    echo "$name $ref built $(( $(date +%s) - start ))"
    # older builds of this image under this registry go (their layers stay while another image uses them)
    docker images --filter "label=divtune.variant=$v" --format '{{.Repository}}:{{.Tag}}' "$registry/$repo" \
        | grep -vxF "$ref" | xargs -r docker rmi >/dev/null 2>&1 || true
done
docker image prune -f >/dev/null 2>&1 || true  # dangling layers of replaced builds
