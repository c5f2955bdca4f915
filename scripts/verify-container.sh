#!/usr/bin/env bash
# Build the Docker image for real without a Docker engine, and run it the way users do.
#
#   sudo scripts/verify-container.sh [SHARED_DATA]        (default: ../shared/data)
#
# 1. debootstrap a Debian root file system of the Dockerfile's release and commit it as the
#    base image's name (docker.io/library/debian:<release>-slim), so the build uses --pull=never;
# 2. buildah bud the Dockerfile (vfs storage, chroot isolation);
# 3. in the built image, with no network (an empty network namespace), a read-only root file
#    system (plus a tmpfs /tmp) and a non-root user: --version, then the participant level on
#    sample-bids as uid 1000 and the group level as an arbitrary uid; the outputs are compared
#    with docs/container_expected_outputs.txt.
# Needs root (mount namespaces), debootstrap and buildah (Debian packages; installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=$(realpath "${1:-../shared/data}")
RELEASE=$(sed -n 's/^ARG DEBIAN_RELEASE=//p' Dockerfile)
BASE=docker.io/library/debian:${RELEASE}-slim
IMAGE=localhost/eneuronet:verify
STATE=${VERIFY_STATE:-/var/tmp/eneuronet-verify}
BUILDAH=(buildah --storage-driver vfs)
mkdir -p "$STATE"

log() { echo "== $(date +%T) $*"; }

if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap
fi

if ! "${BUILDAH[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
    log "debootstrap $RELEASE -> $BASE"
    rm -rf "$STATE/rootfs"
    debootstrap --variant=minbase "$RELEASE" "$STATE/rootfs" http://deb.debian.org/debian >"$STATE/debootstrap.log"
    # As in Docker's debian images: security updates, and no apt caches.
    echo "deb http://deb.debian.org/debian-security ${RELEASE}-security main" >>"$STATE/rootfs/etc/apt/sources.list"
    rm -rf "$STATE/rootfs/var/lib/apt/lists/"* "$STATE/rootfs/var/cache/apt/"*.bin
    tar -C "$STATE/rootfs" -cf "$STATE/rootfs.tar" .
    ctr=$("${BUILDAH[@]}" from scratch)
    "${BUILDAH[@]}" add "$ctr" "$STATE/rootfs.tar" /
    "${BUILDAH[@]}" config --cmd bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
    "${BUILDAH[@]}" commit -q "$ctr" "$BASE"
    "${BUILDAH[@]}" rm "$ctr" >/dev/null
    rm -rf "$STATE/rootfs" "$STATE/rootfs.tar"
fi

log "buildah bud -> $IMAGE"
# The host's pip settings (CA bundle of this network's proxy, local CPU torch wheel) and
# TemplateFlow home reach the build through volumes and build args, never into the image.
build_args=(--build-arg "TEMPLATEFLOW_SEED=/tmp/templateflow-seed"
            -v "$SHARED/templateflow:/tmp/templateflow-seed:ro")
if [ -n "${PIP_CERT:-}" ]; then
    build_args+=(--build-arg PIP_CERT=/tmp/host-ca.crt -v "$PIP_CERT:/tmp/host-ca.crt:ro")
fi
if [ -n "${PIP_FIND_LINKS:-}" ] && [ -d "$PIP_FIND_LINKS" ]; then
    # A local CPU wheel of torch: take the registry's index for the rest.
    build_args+=(--build-arg PIP_FIND_LINKS=/tmp/wheels -v "$PIP_FIND_LINKS:/tmp/wheels:ro"
                 --build-arg TORCH_INDEX_URL=https://pypi.org/simple)
fi
# Docker's image format (OCI drops SHELL); limits no higher than this host's hard limits.
"${BUILDAH[@]}" bud --isolation chroot --pull=never --layers --format docker \
    --ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" \
    "${build_args[@]}" -t "$IMAGE" . 2>&1 | tee "$STATE/build.log" | grep -E '^(STEP|COMMIT)' || true
"${BUILDAH[@]}" inspect --type image "$IMAGE" >/dev/null

ctr=$("${BUILDAH[@]}" from --pull=never "$IMAGE")
root=$("${BUILDAH[@]}" mount "$ctr")
trap '"${BUILDAH[@]}" umount "$ctr" >/dev/null; "${BUILDAH[@]}" rm "$ctr" >/dev/null' EXIT
mapfile -t image_env < <("${BUILDAH[@]}" inspect --type image --format '{{range .OCIv1.Config.Env}}{{println .}}{{end}}' "$IMAGE" | sed '/^$/d')
OUT=$STATE/out
rm -rf "$OUT" && mkdir -p "$OUT" && chown 1000:1000 "$OUT"
USER_ID=1000:1000

# Like `docker run --read-only --tmpfs /tmp --network none --user 1000:1000
#        -v BIDS:/bids:ro -v OUT:/out eneuronet ARGS`: an empty network namespace, the image's
# root bind-mounted read-only, and the image's environment only.
run_image() {
    unshare --mount --net --fork bash -euo pipefail -c '
        root=$1; bids=$2; out=$3
        mount --bind "$root" "$root" && mount -o remount,bind,ro "$root"
        mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
        mount --bind "$bids" "$root/bids" && mount -o remount,bind,ro "$root/bids"
        mount --bind "$out" "$root/out"
        mount -t proc proc "$root/proc"
        mount --rbind /dev "$root/dev"  # with a writable /dev/shm, as Docker gives
        user=$4; shift 4
        exec chroot --userspec="$user" "$root" /usr/bin/env -i "$@"
    ' _ "$root" "$SHARED/sample-bids" "$OUT" "$USER_ID" "${image_env[@]}" eneuronet "$@"
}

log "in the image: --version"
run_image --version
log "in the image: touching the read-only root fails, as it must"
if run_image /bids /out/x participant --skip-bids-validation -w /opt/x 2>"$STATE/ro.log"; then
    echo "a work dir on the read-only root should have been refused" >&2; exit 1
fi
grep -q "cannot be created" "$STATE/ro.log"
log "in the image: participant level on sample-bids (sub-otsu), then the group level"
run_image /bids /out participant --participant-label otsu --nprocs 2 -w /tmp/work
log "in the image: the group level as uid 4242, which has no passwd entry (docker run --user)"
chmod 777 "$OUT"
USER_ID=4242:4242 run_image /bids /out group
(cd "$OUT" && find . -type f | sed 's|^\./||' | LC_ALL=C sort) >"$STATE/outputs.txt"
diff -u docs/container_expected_outputs.txt "$STATE/outputs.txt"
owner=$(stat -c %u "$OUT/dseg.tsv")
[ "$owner" = 1000 ] || { echo "outputs owned by uid $owner, not 1000" >&2; exit 1; }
[ "$(stat -c %u "$OUT/group.html")" = 4242 ] || { echo "group.html not owned by uid 4242" >&2; exit 1; }
log "PASS: image $IMAGE builds and runs offline, read-only, as uid 1000 and as uid 4242"
