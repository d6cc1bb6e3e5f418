#!/usr/bin/env bash
# Prepares what the GPU check needs from this machine in one gitignored folder that the device
# tool can carry, .cache/gpu-carry (the device machine reaches no registry):
#   deno.gz         the pinned Deno binary (node_modules does not travel)
#   npm.tar.gz      node_modules without the Deno binary: the npm packages the tasks import
#   gloo/           the gloo headers of Debian's libgloo-dev (LibTorch ships the symbols only)
#   lib/            liblmdb.so.0 (Debian's liblmdb0), which the shim opens at run time
# Run `npm install` first. Then, with a device: run(command="bash benches/gpu/check.sh",
#   carry=[".cache/gpu-carry"], timeout_s=570)
set -euo pipefail
cd "$(dirname "$0")/../.."
C=.cache/gpu-carry
mkdir -p "$C/lib"
bin=$(ls node_modules/.deno/@deno+linux-x64-glibc@*/node_modules/@deno/linux-x64-glibc/deno 2>/dev/null | head -1 || true)
[ -n "$bin" ] || bin=$(readlink -f node_modules/.bin/deno)
"$bin" --version | head -1
gzip -9 -c "$bin" >"$C/deno.gz.tmp" && mv "$C/deno.gz.tmp" "$C/deno.gz"
tar -czf "$C/npm.tar.gz.tmp" --exclude='node_modules/.deno/@deno+linux-x64-glibc@*' \
  --exclude='node_modules/.deno/deno@*' --exclude='node_modules/@deno/linux-x64-glibc' --exclude='node_modules/deno' \
  node_modules && mv "$C/npm.tar.gz.tmp" "$C/npm.tar.gz"
if [ ! -f "$C/gloo/usr/include/gloo/config.h" ]; then
  tmp=$(mktemp -d)
  if (cd "$tmp" && apt-get download libgloo-dev >/dev/null 2>&1); then
    dpkg -x "$tmp"/libgloo-dev_*.deb "$tmp/x"
  else
    mkdir -p "$tmp/x/usr/include" && cp -r /usr/include/gloo "$tmp/x/usr/include/"
  fi
  rm -rf "$C/gloo" && mkdir -p "$C/gloo/usr" && mv "$tmp/x/usr/include" "$C/gloo/usr/"
  rm -rf "$tmp"
fi
lmdb=$(ldconfig -p | awk '/liblmdb\.so\.0 /{print $NF; exit}')
[ -n "$lmdb" ] || { echo "prepare: liblmdb.so.0 not found (apt-get install liblmdb0)" >&2; exit 1; }
cp -L "$lmdb" "$C/lib/liblmdb.so.0"
du -sh "$C" "$C"/*
