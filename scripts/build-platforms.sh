#!/usr/bin/env bash
# npm run build:platforms [-- platform...]: a release binary for every target in package.json's
# napi.targets (or for the platforms named, e.g. linux-arm64-musl), in napi-rs's artifacts
# layout: npm/<platform>/<binaryName>.<platform>.node. On Linux every target is cross-built
# with napi-rs's cross-compile mode (cargo-zigbuild and zig); the GitHub workflow runs this same
# script on its hosts, so the binaries published from there have the same floors:
#
# - gnu targets link against glibc $GLIBC_FLOOR (zig's stubs, chosen by the `.2.17` suffix), so
#   they load on old distributions, not only on the glibc of the build machine;
# - musl targets link musl dynamically (napi's CLI adds -crt-static: an addon with its own
#   static libc would bring a second libc into Node's process);
# - macOS targets ask for the oldest macOS napi-rs supports instead of the build SDK's, and
#   name themselves @rpath/<file> instead of the build machine's target/ path. On a Mac they
#   build with Apple's linker; elsewhere with zig's, and rustc's warning that xcrun cannot find
#   Apple's SDK is expected: zig links against its own copy of the system library stubs.
#
# Tools are installed on first use (platforms.sh); a second run rebuilds only what changed.
# Every target is tried even when one fails, so that one run shows all that a change breaks.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=platforms.sh
source "$(dirname "$0")/platforms.sh"
cd "$ROOT"

targets=()
for target in $(napi_targets); do
  platform=$(platform_of "$target")
  if [ $# -eq 0 ] || [[ " $* " == *" $platform "* ]]; then
    targets+=("$target")
  fi
done
[ ${#targets[@]} -gt 0 ] || { log "no target in napi.targets is named $*"; exit 2; }
ensure_rust_targets "${targets[@]}"

# napi build writes here first; the binaries are then copied into npm/<platform>/.
staging="$ROOT/target/platforms"
mkdir -p "$staging"

failed=()
for target in "${targets[@]}"; do
  platform=$(platform_of "$target")
  binary=$(binary_of "$platform")
  cargo_target=$target
  cross=--cross-compile
  # Only what this script sets: a developer's RUSTFLAGS (say, target-cpu=native) has no place
  # in binaries for other machines.
  unset MACOSX_DEPLOYMENT_TARGET RUSTFLAGS
  case "$target" in
    *-linux-gnu) cargo_target="$target.$GLIBC_FLOOR" ;;
    x86_64-apple-darwin) export MACOSX_DEPLOYMENT_TARGET=$MACOS_X64_MIN ;;
    aarch64-apple-darwin) export MACOSX_DEPLOYMENT_TARGET=$MACOS_ARM64_MIN ;;
  esac
  case "$target" in
    *-apple-darwin)
      export RUSTFLAGS="-C link-arg=-Wl,-install_name,@rpath/$BINARY_NAME.$platform.node"
      [ "$(uname -s)" = Darwin ] && cross=
      ;;
  esac
  [ -z "$cross" ] || ensure_zig
  # A failed build must not leave the previous binary behind for test-platforms.sh to test.
  rm -f "$binary"
  log "$platform: napi build --target $cargo_target $cross"
  started=$SECONDS
  # --no-js and a .d.ts in the staging directory: the loader and types in the repository root
  # are the host build's (npm run build:native), the same for every platform.
  # shellcheck disable=SC2086 # $cross is one flag or none
  if npx napi build --platform --release $cross --target "$cargo_target" \
    --manifest-path crates/sendfile-napi/Cargo.toml --output-dir "$staging" --no-js --dts binding.d.ts; then
    # Not `napi artifacts`: it also copies every binary into the package root, over the host
    # build that `npm test` loads.
    cp "$staging/$BINARY_NAME.$platform.node" "$binary"
    log "$platform: ${binary#"$ROOT/"} in $((SECONDS - started)) s"
  else
    failed+=("$platform")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  log "build failed for: ${failed[*]}"
  exit 1
fi
