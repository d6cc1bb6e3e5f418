#!/usr/bin/env bash
# GPU check of the distributed layer (issue 7), for a lent GPU machine without registry access:
# builds the shim against the machine's Python torch (a CUDA build; the version pin is lifted),
# with Gloo (headers carried in .cache/gloo) and NCCL (nccl.h from the pip nvidia packages), then
# runs the CUDA-relevant checks and a throughput benchmark. Everything lands under $OUT:
# summary.txt (one line per step), summary.json, and one log per step. Budget: 8 minutes.
#
# Prepare here:  bash benches/gpu/prepare.sh   (writes .cache/deno.gz and .cache/gloo)
# Run there:     run(command="bash benches/gpu/check.sh", carry=[".cache/deno.gz", ".cache/gloo"],
#                    timeout_s=540)
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/.cache/gpu-out}
mkdir -p "$OUT"
BUDGET=${CHECK_BUDGET_S:-470}
T0=$SECONDS

note() { echo "[$((SECONDS - T0))s] $*" | tee -a "$OUT/summary.txt"; }

# step NAME LIMIT CMD...: runs CMD with LIMIT seconds (capped by what is left of the budget),
# output in $OUT/NAME.log, one summary line; returns CMD's status.
step() {
  local name=$1 limit=$2 left start rc
  shift 2
  left=$((BUDGET - (SECONDS - T0)))
  ((left < limit)) && limit=$left
  if ((limit < 10)); then
    note "$name: skipped (budget spent)"
    echo "{\"step\":\"$name\",\"rc\":null,\"skipped\":true}" >>"$OUT/steps.jsonl"
    return 99
  fi
  start=$SECONDS
  timeout -k 5 "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  note "$name: rc=$rc in $((SECONDS - start))s$( ((rc == 124)) && echo ' (timed out)')"
  echo "{\"step\":\"$name\",\"rc\":$rc,\"s\":$((SECONDS - start))}" >>"$OUT/steps.jsonl"
  return $rc
}

: >"$OUT/summary.txt"
: >"$OUT/steps.jsonl"

# ---- Deno: the repository copy carries it gzipped (node_modules does not travel) ----
DENO=$ROOT/node_modules/.bin/deno
if ! "$DENO" --version >/dev/null 2>&1; then
  DENO=$ROOT/.cache/deno-bin/deno
  if [ ! -x "$DENO" ]; then
    mkdir -p "$ROOT/.cache/deno-bin"
    gunzip -c "$ROOT/.cache/deno.gz" >"$DENO.tmp" && chmod +x "$DENO.tmp" && mv "$DENO.tmp" "$DENO"
  fi
fi
if ! "$DENO" --version >"$OUT/deno.txt" 2>&1; then
  note "no usable deno (expected .cache/deno.gz from benches/gpu/prepare.sh)"
  exit 1
fi
export PATH="$(dirname "$DENO"):$PATH"
export DENO_NO_UPDATE_CHECK=1 DENO_NO_PACKAGE_JSON=1 SLIMCLR_ALLOW_TORCH_VERSION=1
export SLIMCLR_GLOO_INCLUDE=$ROOT/.cache/gloo/usr/include SLIMCLR_DIST_TIMEOUT_S=120
RUN=("$DENO" run --allow-all --no-lock)

# ---- the machine ----
{
  nvidia-smi 2>&1 | head -20
  python3 -c 'import torch, sys; print("torch", torch.__version__, "cuda", torch.version.cuda,
    "available", torch.cuda.is_available(), "devices", torch.cuda.device_count(),
    "nccl", torch.cuda.nccl.version() if torch.cuda.is_available() else None)' 2>&1
  python3 -c 'import os, torch; d = os.path.join(os.path.dirname(torch.__file__), "..", "nvidia");
print("nvidia packages:", sorted(os.listdir(d)) if os.path.isdir(d) else None)' 2>&1
  nproc
} >"$OUT/machine.txt" 2>&1
note "machine: $(grep -m1 '^torch' "$OUT/machine.txt")"

# ---- build: three variants at once (gloo+nccl, gloo only, neither); the richest that builds wins ----
build() {
  local name=$1
  shift
  step "build_$name" 300 env SLIMCLR_CACHE="$ROOT/.cache/gpu-$name" "$@" "${RUN[@]}" benches/gpu/build_shim.ts
}
build full &
build gloo SLIMCLR_NO_NCCL=1 &
build none SLIMCLR_NO_NCCL=1 SLIMCLR_NO_GLOO=1 &
wait
LIB=
for v in full gloo none; do
  if [ -f "$ROOT/.cache/gpu-$v/build/libslimclr.so" ]; then
    LIB=$ROOT/.cache/gpu-$v/build/libslimclr.so
    note "using the '$v' build ($(grep -h '^build_shim: LibTorch' "$OUT/build_$v.log" | head -1))"
    break
  fi
done
if [ -z "$LIB" ]; then
  note "no build succeeded; see build_*.log"
  exit 1
fi
export SLIMCLR_LIB=$LIB
"${RUN[@]}" benches/gpu/shim_info.ts >"$OUT/shim.json" 2>&1
note "shim: $(cat "$OUT/shim.json")"

SELF=lib/dist/selftest.ts
LAUNCH=("${RUN[@]}" tasks/launch.ts --nproc)
SINGLE=(env RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$((29400 + RANDOM % 500)))

# ---- checks: CPU sanity of this build, then CUDA ----
step cpu_collectives_2rank 60 "${LAUNCH[@]}" 2 $SELF collectives
step cpu_ddp_2rank 60 "${LAUNCH[@]}" 2 $SELF ddp --steps 6
step nccl_collectives_1rank 90 "${SINGLE[@]}" "${RUN[@]}" $SELF collectives --backend nccl --device cuda
step nccl_ddp_1rank 90 "${SINGLE[@]}" "${RUN[@]}" $SELF ddp --backend nccl --device cuda --steps 6
# two ranks on the visible GPU(s) through Gloo: SyncBatchNorm's CUDA path with a real all-reduce
step gloo_cuda_collectives_2rank 90 "${LAUNCH[@]}" 2 $SELF collectives --backend gloo --device cuda
step gloo_cuda_ddp_2rank 90 "${LAUNCH[@]}" 2 $SELF ddp --backend gloo --device cuda --steps 6
# NCCL with two ranks: needs two GPUs (NCCL refuses two ranks on one device); informational
step nccl_collectives_2rank 60 "${LAUNCH[@]}" 2 $SELF collectives --backend nccl --device cuda

# ---- throughput ----
step bench_gpu_nccl_1proc 120 "${RUN[@]}" benches/dist_bench.ts --device cuda --backend nccl \
  --nproc 1 --batch 256 --steps 8 --reps 10 --no-python
# SlimCLR-MoCo v2 S-ResNet-50 at 224 px: four widths against the full width (the time/FLOP
# ratio of issue 4 on the hardware the paper used) and against Python PyTorch on the same card
step bench_ssl_gpu 150 "${RUN[@]}" benches/ssl_bench.ts --config paper --device cuda --size 224 \
  --batch 64 --iters 5
step bench_gpu_gloo_2proc 120 "${RUN[@]}" benches/dist_bench.ts --device cuda --backend gloo \
  --nproc 2 --batch 256 --steps 8 --reps 5 --no-python
step bench_cpu_gloo_2proc 120 "${RUN[@]}" benches/dist_bench.ts --nproc 2 --batch 64 --steps 5 \
  --reps 5

# ---- summary ----
python3 - "$OUT" <<'PY' || true
import json, os, re, sys
out = sys.argv[1]
steps = [json.loads(l) for l in open(os.path.join(out, "steps.jsonl")) if l.strip()]
results = {}
for s in steps:
    path = os.path.join(out, s["step"] + ".log")
    lines = open(path, errors="replace").read().splitlines() if os.path.exists(path) else []
    found = []
    for l in lines:
        m = re.search(r"(\{.*\})\s*$", l)
        if m:
            try:
                found.append(json.loads(m.group(1)))
            except ValueError:
                pass
    results[s["step"]] = {**s, "json": found, "tail": lines[-6:] if s.get("rc") else []}
shim = open(os.path.join(out, "shim.json")).read().strip()
json.dump({"shim": shim, "steps": results}, open(os.path.join(out, "summary.json"), "w"), indent=1)
PY
note "done"
