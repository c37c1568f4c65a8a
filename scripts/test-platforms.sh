#!/usr/bin/env bash
# npm run test:platforms: every binary that build-platforms.sh put in npm/<platform>/ is checked
# (format and architecture, the napi entry point, its glibc or macOS floor), then each Linux one
# is used the way a user gets it: the packed main and platform packages installed into a clean
# project by npm running on that platform's Node (scripts/platform-node.sh), and
# platform-smoke.mjs run there. macOS and FreeBSD binaries can only be checked here; they run
# on real hosts in .github/workflows/ci.yml.
#
# Prints one line per platform (`linux-arm64-gnu: 16 passed, 0 failed`, or
# `darwin-x64: built, not runnable here`) and ends with `platforms: N passed, M failed`, which
# counts every check and test; exits non-zero if any failed.
#
# --checks-only: only the checks of the binaries (the GitHub workflow's publish job runs this
# on what its hosts built, so that they meet the same floors as the binaries built here).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=platforms.sh
source "$(dirname "$0")/platforms.sh"
cd "$ROOT"

checks_only=false
[ "${1:-}" = --checks-only ] && checks_only=true

# A foreign Node under qemu needs a few seconds per test; no step may hang CI.
STEP_TIMEOUT=300

ensure_debian_packages binutils file llvm # readelf; file; llvm-nm and llvm-objdump read Mach-O
if ! $checks_only; then
  ensure_foreign_nodes
  # The main package as `npm test` built it (.ci/run runs that first); built here if missing.
  if [ ! -f binding.js ] || [ ! -f index.js ]; then
    npm run build
  fi
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/sendfile-platforms-XXXXXX")
trap 'rm -rf "$work"' EXIT

passed=0 failed=0             # the current platform's
total_passed=0 total_failed=0 # every platform's

pass() {
  passed=$((passed + 1))
  echo "  ok - $*"
}

fail() {
  failed=$((failed + 1))
  echo "  not ok - $*"
}

# Runs `check_<what> platform binary`, which prints what it found and returns non-zero on a miss.
check() {
  local what=$1 platform=$2 binary=$3 found
  if found=$("check_$what" "$platform" "$binary" 2>&1); then
    pass "$what: $found"
  else
    fail "$what: $found"
  fi
}

check_format() {
  local description expected
  description=$(file -b "$2")
  case "$1" in
    linux-x64-* | freebsd-x64) expected='ELF 64-bit LSB shared object, x86-64,' ;;
    linux-arm64-*) expected='ELF 64-bit LSB shared object, ARM aarch64,' ;;
    darwin-x64) expected='Mach-O 64-bit x86_64 dynamically linked shared library' ;;
    darwin-arm64) expected='Mach-O 64-bit arm64 dynamically linked shared library' ;;
    *) echo "no expected format for $1"; return 1 ;;
  esac
  # shellcheck disable=SC2001 # two alternatives read better in sed
  sed 's/, \(dynamically linked\|flags:\).*//' <<<"$description"
  [[ "$description" == "$expected"* ]]
}

# Node looks up this symbol when it loads an addon.
check_exports() {
  local symbol=napi_register_module_v1
  case "$1" in
    darwin-*) llvm-nm --extern-only --defined-only "$2" | grep -q " T _$symbol$" ;;
    *) llvm-nm --dynamic --defined-only "$2" | grep -q " T $symbol$" ;;
  esac && echo "$symbol"
}

# The shared libraries an ELF binary needs, one a line.
needed_libraries() {
  readelf --dynamic "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'
}

check_floor() {
  local platform=$1 binary=$2
  case "$platform" in
    *-gnu)
      # The newest GLIBC_x.y any imported symbol asks for is the oldest glibc it loads on.
      local newest
      newest=$(readelf --version-info "$binary" | grep -Eo 'GLIBC_[0-9.]+[0-9]' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
      echo "needs glibc $newest (floor $GLIBC_FLOOR)"
      [ "$(printf '%s\n%s\n' "$newest" "$GLIBC_FLOOR" | sort -V | tail -n 1)" = "$GLIBC_FLOOR" ] &&
        ! readelf --version-info "$binary" | grep -q GLIBC_PRIVATE
      ;;
    *-musl)
      # Linked against musl's one libc.so, with no glibc symbol versions.
      echo "needs $(needed_libraries "$binary" | paste -sd ' ') (musl's) and no glibc symbol version"
      [ "$(needed_libraries "$binary")" = libc.so ] && ! readelf --version-info "$binary" | grep -q GLIBC_
      ;;
    darwin-*)
      local wanted minimum
      wanted=$([ "$platform" = darwin-x64 ] && echo "$MACOS_X64_MIN" || echo "$MACOS_ARM64_MIN")
      # LC_BUILD_VERSION says `minos`; the older LC_VERSION_MIN_MACOSX says `version`.
      minimum=$(llvm-objdump --macho --private-headers "$binary" | awk '
        /cmd LC_BUILD_VERSION/ { build = 1 } build && $1 == "minos" { print $2; exit }
        /cmd LC_VERSION_MIN_MACOSX/ { legacy = 1 } legacy && $1 == "version" { print $2; exit }')
      echo "minos $minimum (wanted $wanted)"
      [ "$minimum" = "$wanted" ]
      ;;
    freebsd-*)
      local newest
      newest=$(readelf --version-info "$binary" | grep -Eo 'FBSD_[0-9.]+[0-9]' | sort -uV | tail -n 1)
      echo "needs $(needed_libraries "$binary" | paste -sd ' '), symbols up to $newest"
      needed_libraries "$binary" | grep -qx libc.so.7
      ;;
  esac
}

# A dylib's install name is recorded in whatever links it; the linker's default is the absolute
# path of the build machine's target/ directory.
check_install_name() {
  local name
  name=$(llvm-objdump --macho --dylib-id "$2" | tail -n 1)
  echo "$name"
  [ "$name" = "@rpath/$BINARY_NAME.$1.node" ]
}

# Packs a package directory into $work and prints the tarball's path.
pack() {
  (cd "$1" && npm pack --json --pack-destination "$work" --loglevel=error) | node -e '
    let json = ""; process.stdin.on("data", (d) => (json += d)).on("end", () => console.log(process.argv[1] + "/" + JSON.parse(json)[0].filename))' "$work"
}

# npm's own JavaScript, run by the platform's Node: npm then checks `os`, `cpu` and `libc`
# against that Node, as it would on a real machine of that platform.
NPM_CLI=$(readlink -f "$(command -v npm)")

# Installs the packed packages into a clean project with that platform's Node and npm, then runs
# platform-smoke.mjs there; adds its results to this platform's counts.
run_installed() {
  local platform=$1 main_tarball=$2 platform_tarball project log
  project="$work/consumer-$platform"
  log="$work/$platform.log"
  mkdir -p "$project"
  echo "{\"name\": \"consumer-$platform\", \"version\": \"1.0.0\", \"private\": true}" >"$project/package.json"
  platform_tarball=$(pack "npm/$platform")
  if (cd "$project" && timeout "$STEP_TIMEOUT" "$ROOT/scripts/platform-node.sh" "$platform" "$NPM_CLI" install \
    --prefer-offline --no-audit --no-fund --loglevel=error "$main_tarball" "$platform_tarball") >"$log" 2>&1; then
    pass "the packed packages install with $platform's Node and npm"
  else
    fail "the packed packages install with $platform's Node and npm"
    sed 's/^/    /' "$log"
    return
  fi
  local package_name installed_binary
  package_name=$(node -p "require('./npm/$platform/package.json').name")
  installed_binary="node_modules/$package_name/$BINARY_NAME.$platform.node"
  cp scripts/platform-smoke.mjs "$project/"
  (cd "$project" && timeout "$STEP_TIMEOUT" "$ROOT/scripts/platform-node.sh" "$platform" platform-smoke.mjs --binary "$installed_binary") >"$log" 2>&1 || true
  sed 's/^/  /' "$log" | grep -v 'passed, .* failed$' || true
  local summary
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
  if [ -z "$summary" ]; then
    fail "platform-smoke.mjs ended without its summary line"
    return
  fi
  passed=$((passed + $(cut -d' ' -f1 <<<"$summary")))
  failed=$((failed + $(cut -d' ' -f3 <<<"$summary")))
}

$checks_only || main_tarball=$(pack "$ROOT")
for target in $(napi_targets); do
  platform=$(platform_of "$target")
  binary=$(binary_of "$platform")
  passed=0 failed=0
  echo "$platform ($target)"
  if [ ! -f "$binary" ]; then
    fail "$binary is missing: run npm run build:platforms"
  else
    check format "$platform" "$binary"
    check exports "$platform" "$binary"
    check floor "$platform" "$binary"
    case "$platform" in darwin-*) check install_name "$platform" "$binary" ;; esac
    case "$platform" in linux-*) $checks_only || run_installed "$platform" "$main_tarball" ;; esac
  fi
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  case "$platform" in
    linux-*) echo "$platform: $passed passed, $failed failed" ;;
    *) echo "$platform: built, not runnable here$([ "$failed" -eq 0 ] || echo ", $failed checks failed")" ;;
  esac
done

echo "platforms: $total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
