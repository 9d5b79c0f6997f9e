#!/usr/bin/env bash
# Prepares the GPU builds of host-train (`--features cuda`, `--features wgpu`) on a fresh
# machine of this project's kind, without the download that burn's CUDA stack would do itself.
# Idempotent; safe to run again (a second run only checks).
#
# Why: burn 0.22.1's `cuda` feature pulls cubecl-cuda 0.11.3, which always compiles cubecl-llvm
# (LLVM -> PTX). Its build dependency tracel-llvm-bundler downloads a static LLVM 23.1 from
# GitHub into $XDG_DATA_HOME/tracel/tracel-llvm-23.1.0-4 unless the sentinel file
# `.tracel-llvm-installed` is already there; cubecl-llvm's build script then compiles two C++
# shims against its headers and links the libraries `bin/llvm-config --link-static` names.
# GitHub is not reachable from the build machines; PyPI is. PyPI's `mlc-llvm-static` wheel is a
# static LLVM 23.1 (libraries, headers, an llvm-config front end) and
# `mlc-llvm-static-extra-targets` adds the other backends, NVPTX among them. This script puts
# both where the bundler looks, checked against pinned SHA-256 sums, and marks them installed.
#
# Run time needs nothing from here: cudarc loads libcuda when the binary starts, so a binary
# built on a machine without CUDA runs on the GPU machine (see scripts/gpu-check.sh).
#
# Usage: bash scripts/setup-gpu.sh          (then: cargo build --release -p host-train --features cuda)
set -euo pipefail
cd "$(dirname "$0")/.."

llvm_wheel_version=23.1.1.post0
declare -A wheel_sha256=(
  [mlc_llvm_static]=dcfec888abfaa418be77d41af585805f31463584cf9c90582992c00f392c1ac5
  [mlc_llvm_static_extra_targets]=c36e834d9a4e9cf9759f27fece65711ece7a2fc2b5a96dbb15d66f5e9e787929
)
# What tracel-llvm-bundler 23.1.0-4 computes (dirs::data_local_dir()/tracel/...).
prefix="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4"
sentinel="$prefix/.tracel-llvm-installed"

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "setup-gpu.sh knows the Linux x86-64 wheels only (this is $(uname -s)-$(uname -m))" >&2
  exit 1
fi

# The C++ shims need a C++ compiler; LLVM's static libraries need zlib and zstd at link time;
# llvm-config is a Python script.
need=()
command -v c++ >/dev/null || need+=(g++)
command -v python3 >/dev/null || need+=(python3)
command -v unzip >/dev/null || need+=(unzip)
[ -e /usr/include/zlib.h ] || need+=(zlib1g-dev)
[ -e /usr/include/zstd.h ] || need+=(libzstd-dev)
. scripts/apt-install.sh
apt_install ${need[@]+"${need[@]}"}

if [ ! -e "$sentinel" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  echo "fetching a static LLVM 23.1 with NVPTX (mlc-llvm-static $llvm_wheel_version, about 92 MB) from PyPI"
  python3 -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
    --python-version 3.11 --implementation py --dest "$work" \
    "mlc-llvm-static==$llvm_wheel_version" "mlc-llvm-static-extra-targets==$llvm_wheel_version"
  for name in "${!wheel_sha256[@]}"; do
    whl="$work/$name-$llvm_wheel_version-py3-none-manylinux_2_28_x86_64.whl"
    got="$(sha256sum "$whl" | cut -d' ' -f1)"
    if [ "$got" != "${wheel_sha256[$name]}" ]; then
      echo "checksum mismatch for $(basename "$whl"): expected ${wheel_sha256[$name]}, got $got" >&2
      exit 1
    fi
    unzip -q -o "$whl" 'mlc_llvm_static/static/*' -d "$work/unpacked"
  done
  # Install atomically: a half-copied tree never carries the sentinel.
  rm -rf "$prefix.partial"
  mkdir -p "$(dirname "$prefix")"
  mv "$work/unpacked/mlc_llvm_static/static" "$prefix.partial"
  chmod +x "$prefix.partial/bin/llvm-config"
  rm -rf "$prefix"
  mv "$prefix.partial" "$prefix"
  touch "$sentinel"
fi

# Check what the build scripts will ask of it.
config="$prefix/bin/llvm-config"
version="$("$config" --version)"
case "$version" in
  23.1.*) ;;
  *) echo "$config reports LLVM $version, expected 23.1.x" >&2; exit 1 ;;
esac
if ! "$config" --targets-built | tr ' ' '\n' | grep -qx NVPTX; then
  echo "$config has no NVPTX backend (is mlc-llvm-static-extra-targets installed?)" >&2
  exit 1
fi
"$config" --link-static --libs >/dev/null
echo "LLVM $version with NVPTX ready in $prefix"
