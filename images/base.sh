#!/usr/bin/env bash
# The CPU images' base without a registry: Debian bookworm (debootstrap, minbase) + its Python 3.11, imported as a
# local image.  Prints the image ref.  Keyed by this script's content: the rootfs tarball is cached under
# $E2E_CACHE, the image in the daemon; a second call with the same script reuses both.
set -euo pipefail
CACHE=${E2E_CACHE:-/var/cache/divtune-e2e}
key=$(sha256sum "$0" | cut -c1-12)
ref=localhost/divtune-base:bookworm-py311-$key
if docker image inspect "$ref" >/dev/null 2>&1; then echo "[base] $ref (cached)" >&2; echo "$ref"; exit 0; fi
tar=$CACHE/base-bookworm-py311-$key.tar
if [ ! -s "$tar" ]; then
    command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
    mkdir -p "$CACHE"
    root=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'umount "$root/proc" 2>/dev/null || true; rm -rf "$root"' EXIT
    echo "[base] debootstrap bookworm -> $root" >&2
    debootstrap --variant=minbase bookworm "$root" >&2
    mount -t proc proc "$root/proc"
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    # python3.11-venv: bookworm's pip refuses system installs (PEP 668), the images install into a venv
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        python3.11 python3.11-venv ca-certificates >&2
    chroot "$root" apt-get clean
    umount "$root/proc"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/tmp/*
    tar --numeric-owner -C "$root" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
fi
docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3.11"]' "$tar" "$ref" >&2
echo "[base] $ref (imported $(du -h "$tar" | cut -f1))" >&2
echo "$ref"
