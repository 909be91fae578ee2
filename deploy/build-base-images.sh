#!/usr/bin/env bash
# Builds the base images the Dockerfile and the deploy test need from Debian packages, for a
# machine that reaches Debian's mirror but no image registry: a root filesystem made by
# mmdebstrap, imported into podman. Images that exist are kept unless --force.
#
#   localhost/computebill-python:trixie    python3 (3.13): the build and runtime stages
#   localhost/computebill-node:trixie      nodejs (20) and npm: the web assets' stage
#   localhost/computebill-services:trixie  postgresql (17), valkey-server, pgbouncer, nginx
#
# Usage: deploy/build-base-images.sh [--force] [python|node|services ...]   (root; mmdebstrap)
set -euo pipefail

suite=trixie
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
force=0
wanted=()
for arg in "$@"; do
    case $arg in
        --force) force=1 ;;
        python | node | services) wanted+=("$arg") ;;
        *) echo "usage: $0 [--force] [python|node|services ...]" >&2; exit 2 ;;
    esac
done
[ ${#wanted[@]} -gt 0 ] || wanted=(python node services)

packages_of() {
    case $1 in
        python) echo "python3,python3-venv,ca-certificates,passwd" ;;
        node) echo "nodejs,npm,ca-certificates" ;;
        services) echo "postgresql,valkey-server,pgbouncer,nginx-light,ca-certificates" ;;
    esac
}

# The machine's own certificate authorities (a proxy's, where the registries are reached through
# one) are trusted in the images too, by every client: pip, uv, npm and Python's ssl.
trust_local_cas=()
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    trust_local_cas=(--customize-hook='copy-in /usr/local/share/ca-certificates /usr/local/share'
        --customize-hook='chroot "$1" update-ca-certificates --fresh >/dev/null')
fi
ca_bundle=/etc/ssl/certs/ca-certificates.crt

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

for name in "${wanted[@]}"; do
    image="localhost/computebill-$name:$suite"
    if [ "$force" = 0 ] && podman image exists "$image"; then
        echo "$image exists (--force builds it again)"
        continue
    fi
    echo "building $image"
    # Documentation, manual pages and translations are left out, and apt's lists removed:
    # the images are only run, never administered.
    mmdebstrap --quiet --variant=minbase --include="$(packages_of "$name")" \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        "${trust_local_cas[@]}" \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
        "$suite" "$workdir/$name.tar" "$mirror"
    podman import --change 'ENV LANG=C.UTF-8' --change "ENV SSL_CERT_FILE=$ca_bundle" \
        --change "ENV PIP_CERT=$ca_bundle" --change "ENV NODE_EXTRA_CA_CERTS=$ca_bundle" \
        --change 'CMD ["bash"]' \
        "$workdir/$name.tar" "$image" >/dev/null
    rm -f "$workdir/$name.tar"
    echo "$image: $(podman image inspect --format '{{.Size}}' "$image") bytes"
done
