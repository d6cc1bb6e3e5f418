#!/usr/bin/env bash
# Prepares what the GPU check needs from this machine, in gitignored paths that `run` can carry:
# .cache/deno.gz (the pinned Deno binary; node_modules does not travel) and .cache/gloo (the gloo
# headers of Debian's libgloo-dev, unpacked without installing it).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .cache
bin=$(ls node_modules/.deno/@deno+linux-x64-glibc@*/node_modules/@deno/linux-x64-glibc/deno 2>/dev/null | head -1 || true)
[ -n "$bin" ] || bin=$(readlink -f node_modules/.bin/deno)
"$bin" --version | head -1
gzip -9 -c "$bin" >.cache/deno.gz.tmp && mv .cache/deno.gz.tmp .cache/deno.gz
if [ ! -f .cache/gloo/usr/include/gloo/config.h ]; then
  tmp=$(mktemp -d)
  if (cd "$tmp" && apt-get download libgloo-dev >/dev/null 2>&1); then
    dpkg -x "$tmp"/libgloo-dev_*.deb "$tmp/x"
  else
    mkdir -p "$tmp/x/usr/include" && cp -r /usr/include/gloo "$tmp/x/usr/include/"
  fi
  rm -rf .cache/gloo && mkdir -p .cache/gloo/usr && mv "$tmp/x/usr/include" .cache/gloo/usr/
  rm -rf "$tmp"
fi
du -sh .cache/deno.gz .cache/gloo
