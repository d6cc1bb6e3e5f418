#!/usr/bin/env bash
# The GPU check (issue 22), one script for a lent GPU machine that reaches no registry. It builds
# the shim against the machine's Python torch (a CUDA build; the version pin is lifted and the
# version reported), runs the CUDA-only tests, NCCL and SyncBatchNorm checks, the SlimCLR-MoCo v2
# step against PyTorch (fp16 and bf16 AMP, full width and four widths, peak memory, the largest
# batch), the 224-px JPEG feed against the step, and a launched CUDA pretraining run. Everything
# lands under $OUT: summary.txt (a line per step), steps.jsonl, results.jsonl (every JSON result
# line), summary.json, machine.txt, shim.json and logs.tar.gz (one log per step). Budget: CHECK_BUDGET_S (default 500 s).
#
# Prepare here:  npm install && bash benches/gpu/prepare.sh   (fills .cache/gpu-carry)
# Run there:     run(command="bash benches/gpu/check.sh", carry=[".cache/gpu-carry"], timeout_s=570)
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/.cache/gpu-out}
mkdir -p "$OUT"
BUDGET=${CHECK_BUDGET_S:-500}
CARRY=$ROOT/.cache/gpu-carry
WORK=${CHECK_WORK:-/tmp/slimclr-gpu}
T0=$SECONDS
LOGS=$WORK/logs
mkdir -p "$LOGS"
# The device tool returns at most 8 files: the logs travel as one archive.
trap 'tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs 2>/dev/null' EXIT

# CHECK_STEPS="a b": run only these steps (and one build); empty: all of them.
want() { [ -z "${CHECK_STEPS:-}" ] || [[ " $CHECK_STEPS " == *" $1 "* ]]; }
note() { echo "[$((SECONDS - T0))s] $*" | tee -a "$OUT/summary.txt"; }

# step NAME LIMIT CMD...: runs CMD with LIMIT seconds (capped by what is left of the budget),
# output in $LOGS/NAME.log, JSON lines of it appended to results.jsonl; returns CMD's status.
step() {
  local name=$1 limit=$2 left start rc
  shift 2
  want "$name" || [[ $name == build_* ]] || return 98
  left=$((BUDGET - (SECONDS - T0)))
  ((left < limit)) && limit=$left
  if ((limit < 10)); then
    note "$name: skipped (budget spent)"
    echo "{\"step\":\"$name\",\"rc\":null,\"skipped\":true}" >>"$OUT/steps.jsonl"
    return 99
  fi
  start=$SECONDS
  timeout -k 5 "$limit" "$@" >"$LOGS/$name.log" 2>&1
  rc=$?
  note "$name: rc=$rc in $((SECONDS - start))s$( ((rc == 124)) && echo ' (timed out)')"
  echo "{\"step\":\"$name\",\"rc\":$rc,\"s\":$((SECONDS - start))}" >>"$OUT/steps.jsonl"
  grep -ho '^{"bench".*}$\|^\[0\] {"bench".*}$\|^{"rank".*}$' "$LOGS/$name.log" |
    sed "s/^\[0\] //; s/^{/{\"step\":\"$name\",/" >>"$OUT/results.jsonl"
  return $rc
}

: >"$OUT/summary.txt"
: >"$OUT/steps.jsonl"
: >"$OUT/results.jsonl"

# ---- Deno and the npm packages travel in .cache/gpu-carry (node_modules is gitignored) ----
DENO=$ROOT/node_modules/.bin/deno
if ! "$DENO" --version >/dev/null 2>&1; then
  DENO=$WORK/deno-bin/deno
  mkdir -p "$WORK/deno-bin"
  [ -x "$DENO" ] || { gunzip -c "$CARRY/deno.gz" >"$DENO.tmp" && chmod +x "$DENO.tmp" && mv "$DENO.tmp" "$DENO"; }
fi
if [ ! -d "$ROOT/node_modules/.deno/yaml@2.9.1" ] && [ -f "$CARRY/npm.tar.gz" ]; then
  tar -xzf "$CARRY/npm.tar.gz" -C "$ROOT"
fi
if ! "$DENO" --version >"$OUT/deno.txt" 2>&1; then
  note "no usable deno (expected .cache/gpu-carry/deno.gz from benches/gpu/prepare.sh)"
  exit 1
fi
export PATH="$(dirname "$DENO"):$PATH"
export DENO_NO_UPDATE_CHECK=1 DENO_NO_PACKAGE_JSON=1 SLIMCLR_ALLOW_TORCH_VERSION=1
export SLIMCLR_GLOO_INCLUDE=$CARRY/gloo/usr/include SLIMCLR_DIST_TIMEOUT_S=120
export LD_LIBRARY_PATH=$CARRY/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# node_modules is used as it is (no resolution against the registry, which is out of reach there)
NM=(--cached-only --node-modules-dir=manual)
RUN=("$DENO" run --allow-all "${NM[@]}")

# ---- the machine ----
{
  nvidia-smi 2>&1 | head -20
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
    "available", torch.cuda.is_available(), "devices", torch.cuda.device_count(),
    "nccl", torch.cuda.nccl.version() if torch.cuda.is_available() else None,
    "cudnn", torch.backends.cudnn.version())' 2>&1
  nproc
  lscpu | grep -m1 'Model name'
  g++ --version | head -1
} >"$OUT/machine.txt" 2>&1
note "machine: $(grep -m1 '^torch' "$OUT/machine.txt"); $(grep -m1 'Model name' "$OUT/machine.txt")"

# ---- synthetic ImageNet-format JPEGs for the feed and the launched run (CPU, beside the build) ----
want feed || want pretrain_launch_nccl && (
  python3 benches/python/data_bench.py --make-images "$WORK/jpeg/train" --count 1280 &&
    python3 benches/python/data_bench.py --make-images "$WORK/jpeg/val" --count 256
) >"$LOGS/make_jpegs.log" 2>&1 &
JPEGS=$!

# ---- build: three variants at once (gloo+nccl, gloo only, neither); the richest that builds wins ----
build() {
  local name=$1
  shift
  step "build_$name" 300 env SLIMCLR_CACHE="$WORK/build-$name" "$@" "${RUN[@]}" benches/gpu/build_shim.ts
}
build full &
B1=$!
B2= B3=
if [ -z "${CHECK_STEPS:-}" ]; then
  build gloo SLIMCLR_NO_NCCL=1 &
  B2=$!
  build none SLIMCLR_NO_NCCL=1 SLIMCLR_NO_GLOO=1 &
  B3=$!
fi
wait $B1 $B2 $B3
LIB=
for v in full gloo none; do
  if [ -f "$WORK/build-$v/build/libslimclr.so" ]; then
    LIB=$WORK/build-$v/build/libslimclr.so
    note "using the '$v' build ($(grep -h '^build_shim: LibTorch' "$LOGS/build_$v.log" | head -1))"
    break
  fi
done
if [ -z "$LIB" ]; then
  note "no build succeeded; see logs.tar.gz"
  tail -30 "$LOGS/build_full.log"
  exit 1
fi
export SLIMCLR_LIB=$LIB
"${RUN[@]}" benches/gpu/shim_info.ts >"$OUT/shim.json" 2>&1
note "shim: $(cat "$OUT/shim.json")"

# ---- the suite's CUDA-only tests ----
step cuda_tests 120 "$DENO" test --allow-all "${NM[@]}" --no-check --filter CUDA \
  tests/cuda.test.ts tests/ssl_methods.test.ts

# ---- the step against PyTorch on the same card: S-ResNet-50, 224 px, batch 64 ----
PEAK=989 # dense bf16/fp16 TFLOP/s of an H100/H200 SXM (datasheet)
for amp in fp16 bf16; do
  step "ssl_${amp}_b64" 120 "${RUN[@]}" benches/ssl_bench.ts --config paper --device cuda \
    --size 224 --batch 64 --iters 7 --amp "$amp" --peak-tflops "$PEAK"
done
# the same with cuDNN's autotuner on both sides, and a larger batch (narrow widths fill the card)
step ssl_fp16_b64_cudnn_benchmark 120 "${RUN[@]}" benches/ssl_bench.ts --config paper --device cuda \
  --size 224 --batch 64 --iters 7 --amp fp16 --peak-tflops "$PEAK" --cudnn-benchmark
step ssl_fp16_b256 150 "${RUN[@]}" benches/ssl_bench.ts --config paper --device cuda \
  --size 224 --batch 256 --iters 5 --amp fp16 --peak-tflops "$PEAK"
step ssl_bf16_max_batch 90 "${RUN[@]}" benches/ssl_bench.ts --config paper --device cuda \
  --size 224 --batch 128 --amp bf16 --max-batch --no-python

# ---- the 224-px two-view JPEG feed against the fp16 four-width step ----
wait $JPEGS
[ -s "$LOGS/make_jpegs.log" ] && note "jpegs: $(tail -1 "$LOGS/make_jpegs.log")"
STEP_MS=$(grep -h '"mocov2_step_four_widths"' "$LOGS/ssl_fp16_b64.log" |
  sed 's/.*"ours_ms":\([0-9.]*\).*/\1/' | head -1)
step feed 90 "${RUN[@]}" benches/feed_bench.ts --root "$WORK/jpeg" --threads "$(nproc)" \
  --batch 64 --step-ms "${STEP_MS:-100}" --batches 30 --device cuda

# ---- NCCL: one rank (NCCL refuses two ranks on one device), and SyncBN over two Gloo ranks ----
SELF=lib/dist/selftest.ts
SINGLE=(env RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$((29400 + RANDOM % 500)))
step nccl_collectives_1rank 60 "${SINGLE[@]}" "${RUN[@]}" $SELF collectives --backend nccl --device cuda
step nccl_ddp_1rank 60 "${SINGLE[@]}" "${RUN[@]}" $SELF ddp --backend nccl --device cuda --steps 6
step gloo_cuda_collectives_2rank 60 "${RUN[@]}" tasks/launch.ts --nproc 2 $SELF collectives \
  --backend gloo --device cuda

# ---- a launched CUDA pretraining run: NCCL, SyncBatchNorm, fp16, the ImageFolder feed ----
step pretrain_launch_nccl 150 "${RUN[@]}" tasks/launch.ts --nproc 1 tasks/pretrain.ts \
  --config configs/slimclr_mocov2_r50_200ep.yaml --data.root "$WORK/jpeg" --data.batch_size 64 \
  --data.workers "$(nproc)" --ssl.queue 1280 --slim.start_epoch 0 --schedule.epochs 2 \
  --schedule.warmup_epochs 0 --run.sync_bn true --run.knn_every 0 --run.log_every 1 \
  --run.out "$WORK/runs" --run.name gpu-check
RUNDIR=$WORK/runs/gpu-check
[ -f "$RUNDIR/metrics.jsonl" ] && cp "$RUNDIR/metrics.jsonl" "$LOGS/pretrain_metrics.jsonl"
[ -f "$RUNDIR/summary.json" ] && cp "$RUNDIR/summary.json" "$LOGS/pretrain_summary.json"

# ---- summary ----
python3 - "$OUT" "$LOGS" <<'PY' || true
import json, os, sys
out, logs = sys.argv[1], sys.argv[2]
res = [json.loads(l) for l in open(os.path.join(out, "results.jsonl")) if l.strip().startswith("{")]
steps = [json.loads(l) for l in open(os.path.join(out, "steps.jsonl")) if l.strip()]
summary = {"shim": open(os.path.join(out, "shim.json")).read().strip(), "steps": steps, "results": res}
m = os.path.join(logs, "pretrain_metrics.jsonl")
if os.path.exists(m):
    rows = [json.loads(l) for l in open(m) if l.strip()]
    train = [r for r in rows if "data_wait_s" in r]
    if len(train) > 2:
        a, b = train[1], train[-1]  # from the second logged step: the first includes start-up
        n = b["step"] - a["step"]
        summary["pretrain_wait_ms_per_step"] = 1000 * (b["data_wait_s"] - a["data_wait_s"]) / max(n, 1)
        summary["pretrain_rows"] = train[-3:]
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)
print(json.dumps({k: summary[k] for k in summary if k.startswith("pretrain_wait")}))
PY
note "done"
