#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh machine of this project's kind.
# Idempotent; safe to run again.
set -euo pipefail
if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust (rustup) first" >&2
  exit 1
fi
# rustfmt and clippy come with the rustup toolchain; add them if this toolchain lacks them.
for c in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
done
# The device runtime is also built for two Cortex-M targets (M4F and M0); the edge-box
# classifier for a Linux AArch64 board (static, musl, linked by rust-lld: no cross C toolchain).
for t in thumbv7em-none-eabihf thumbv6m-none-eabi aarch64-unknown-linux-musl; do
  rustup target list --installed 2>/dev/null | grep -q "^$t\$" || rustup target add "$t"
done
# QEMU runs the firmware for the Cortex-M tests and `export deploy` (Debian's 7.2 is known good);
# qemu-user runs the AArch64 classifier (`export deploy --board linux-aarch64`).
need=()
command -v qemu-system-arm >/dev/null || need+=(qemu-system-arm)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
. "$(dirname "$0")/apt-install.sh"
apt_install ${need[@]+"${need[@]}"}
