#!/bin/bash
# One call on a GPU machine: GPU correctness first (every kernel against the CPU reference, the tiny transformer
# against the CPU run of the same plan), then one full-size FLUX.1-dev step from synthetic NF4 and bf16 plans, and
# optionally the diffusers peer's step in the same run. Binaries and shared libraries come prebuilt in $QD_CARRY
# (bin/, lib/); the peer's packages in $QD_CARRY/peer. Results (JSON lines) go to $OUT.
#   usage: bench/run_h200.sh [tests] [nf4] [bf16] [peer] [kernel-tests] [pipeline-tests] [pipeline] [pipeline-peer]
#                            [stream-tests] [offload] [offload-peer] [batch] [sequential] [tiles] [concat] [pin] [final] [reuse] [probe]
#                            [sweep] [tune] [autotune]
# pipeline: the full-size FLUX.1-dev pipeline (random weights from qdc synth, the real FLUX tokenizers from
# tests/data/tokenizers/flux_full, carried) compiled with qdc's defaults and timed with bench/flux_pipeline;
# pipeline-peer: the same with diffusers' FluxPipeline (NF4 transformer and T5, torch.compile; the anchors' bench)
# in the same run; pipeline-tests: the GPU pipeline against the CPU and the pipeline ops' kernels (also in tests).
# stream-tests: the small transformer with streamed weights against the CPU; offload: the full-size pipeline plan
# (1024x1024 and 512x512) with every offload schedule, and its transformer step resident and streamed;
# offload-peer: the peer's model offload in the same run. tiles: the small pipeline's GPU test (tiled decoding and
# the out-of-memory sweep included), then the full-size pipeline at 1024x1024 resident, with group and sequential
# offload, and under budgets small enough that the VAE must decode in tiles (compared with the whole decode).
# concat: linears over concatenations as GEMMs over the parts (lowering.h), checked on the small transformer and
# the small pipeline, then timed against the copy on the full-size step. pin: ways to pin host memory
# (bench/pin_probe.c), the small transformer against the CPU, and the first group-offload image's load. final: the
# small pipeline's GPU test, then the full-size pipeline resident and with group offload. reuse: the same with
# none (decoding in tiles), model and group, logging where each executor's preparation went (kernel modules are kept across images),
# with the SM clock and power sampled by nvidia-smi meanwhile. sweep: the full-size NF4 step with each op class
# alone in the step's order (flux_step --class-sweep), every line with its SM clock and power (NVML). tune: the
# same with the GEMM algorithms from the heuristic and from tuning. autotune: qdc tune (compiler/autotune.h) on the
# small transformer (then against the CPU), qdc compile --autotune on the tiny pipeline (then qdrun), and qdc tune on
# the full-size VAE and NF4 transformer (then the step tuned and untuned, alternating).
set -u
CARRY=${QD_CARRY:-.carry}
B=$CARRY/bin
export LD_LIBRARY_PATH=$PWD/$CARRY/lib:${LD_LIBRARY_PATH:-}
export QD_TEST_DATA=$PWD/tests/data QD_SOURCE_ROOT=$PWD
OUT=${OUT:-/tmp/qd-out}
mkdir -p "$OUT"
want() { case " $* " in *" $STAGE "*) return 0;; esac; return 1; }
STAGES="${*:-tests nf4 bf16}"

pipeline_tests() {
  echo "== the small pipeline on CUDA against the CPU reference"
  QD_QDC=$B/qdc timeout 300 "$B/test_gpu_pipeline"; echo "test_gpu_pipeline rc=$?"
  for t in test_gpu_image_kernels test_gpu_text_kernels; do
    [ -x "$B/$t" ] || continue
    echo "== $t"
    timeout 200 "$B/$t" --no-bench > "$OUT/$t.txt" 2>&1; echo "$t rc=$?"
    grep -E "FAIL|error" "$OUT/$t.txt" | head -20; tail -3 "$OUT/$t.txt"
  done
}

# The full-size FLUX.1-dev pipeline (synthetic weights, the real tokenizers), compiled with qdc's defaults (NF4
# transformer and T5, 1024x1024, kernels for this GPU).
build_full_plan() {
  echo "== full-size FLUX.1-dev pipeline (synthetic weights), qdc compile defaults (NF4 transformer and T5)"
  D=/tmp/flux_full
  rm -rf $D; mkdir -p $D/transformer $D/text_encoder $D/text_encoder_2 $D/vae
  /usr/bin/time -f "synth: %e s" sh -c "
    '$B/qdc' synth models/flux-transformer.json --seed 1 -q -o $D/transformer/diffusion_pytorch_model.safetensors &
    '$B/qdc' synth models/t5-xxl-encoder.json --seed 3 -q -o $D/text_encoder_2/model.safetensors &
    '$B/qdc' synth models/clip-l.json --seed 2 -q -o $D/text_encoder/model.safetensors &&
    '$B/qdc' synth models/flux-vae-decoder.json --seed 4 -q -o $D/vae/diffusion_pytorch_model.safetensors; wait"
  cp -R tests/data/tokenizers/flux_full/tokenizer tests/data/tokenizers/flux_full/tokenizer_2 $D/
  cp -R tests/data/golden/pipeline_tiny/scheduler tests/data/golden/pipeline_tiny/model_index.json $D/
  /usr/bin/time -f "compile: %e s" "$B/qdc" compile $D -o /tmp/flux_full.qplan -q ${QD_FULL_RESOLUTIONS:+--resolutions $QD_FULL_RESOLUTIONS}
  rm -rf $D
  "$B/qdrun" --check /tmp/flux_full.qplan | tail -4
}

run_full_pipeline() {
  echo "== qd: the full-size pipeline on CUDA, 1024x1024, 28 steps"
  timeout 240 "$B/flux_pipeline" /tmp/flux_full.qplan --runs 3 --jsonl "$OUT/pipeline.jsonl"
  echo "-- model offload (each component on the GPU only for its phase)"
  timeout 120 "$B/flux_pipeline" /tmp/flux_full.qplan --runs 2 --offload model --jsonl "$OUT/pipeline.jsonl"
}

run_peer_pipeline() {
  echo "== the peer: diffusers FluxPipeline, NF4 transformer and T5 + torch.compile, 1024x1024, 28 steps"
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "$CARRY"/peer/*.whl >/dev/null 2>&1
  (export PYTHONPATH=/tmp/site:$PWD/$CARRY/peer/bnb PYTHONUNBUFFERED=1 OUT PEER_BNB=$PWD/$CARRY/peer/bnb
   timeout 420 python3 "$CARRY/peer/diffusers_flux_bench.py" nf4_compile 2>&1 | tail -3)
}
# Every offload schedule of the full-size pipeline at 1024x1024 and 512x512, and the transformer's step with its
# blocks streamed (runtime/cuda/weight_stream.h) beside the resident step.
run_offload_steps() {
  P=/tmp/flux_full.qplan
  echo "== the transformer step, resident (time per GEMM shape) and streamed (pinned host weights, copy stream)"
  timeout 200 "$B/flux_step" $P --resolution 1024x1024,512x512 --iters 20 --gemm-profile --jsonl "$OUT/step.jsonl"
  [ -n "${QD_NO_STREAM_STEPS:-}" ] && return
  for v in "--slots 2" "--slots 3" "--slots 3 --keep 1"; do
    echo "-- streamed $v"
    timeout 200 "$B/flux_step" $P --resolution 1024x1024,512x512 --iters 20 --stream $v --jsonl "$OUT/step.jsonl"
  done
}
run_offload_pipelines() {
  P=/tmp/flux_full.qplan
  for size in 1024x1024 512x512; do
    for mode in ${QD_OFFLOAD_MODES:-none model group}; do
      echo "== the pipeline at $size, offload $mode"
      timeout 150 "$B/flux_pipeline" $P --size $size --runs 2 --offload $mode --jsonl "$OUT/pipeline.jsonl"
    done
    for budget in ${QD_BUDGETS:-3G}; do
      echo "== a $budget budget at $size (the schedule the plan's estimates pick)"
      timeout 150 "$B/flux_pipeline" $P --size $size --runs 2 --vram-budget $budget --jsonl "$OUT/pipeline.jsonl"
    done
  done
}
run_peer_offload() {
  echo "== the peer: diffusers FluxPipeline NF4 + torch.compile with model CPU offload, 1024x1024"
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "$CARRY"/peer/*.whl >/dev/null 2>&1
  (export PYTHONPATH=/tmp/site:$PWD/$CARRY/peer/bnb PYTHONUNBUFFERED=1 OUT PEER_BNB=$PWD/$CARRY/peer/bnb
   timeout 300 python3 "$CARRY/peer/diffusers_flux_bench.py" nf4_compile_offload 2>&1 | tail -3)
}

nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.used --format=csv,noheader
# The SM clock and board power while a stage runs (the H200 caps at 700 W; a step under the cap runs ~18% below its
# top clock, docs/performance.md): smi_start before, smi_report after (min, median, max of the busy samples).
smi_start() {
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu \
    --format=csv,noheader -lms 250 > "$OUT/smi_$1.csv" 2>&1 &
  SMI=$!
}
smi_report() {
  kill $SMI 2>/dev/null; wait $SMI 2>/dev/null
  echo "-- SM clock / power while it ran (samples with utilization > 50%)"
  awk -F', ' '$6+0 > 50 {print $2+0}' "$OUT/smi_$1.csv" | sort -n | awk '{c[NR]=$1} END {
    if (NR) printf "clock min %d, median %d, max %d MHz over %d samples\n", c[1], c[int((NR+1)/2)], c[NR], NR}'
  awk -F', ' '$6+0 > 50 {print $4+0}' "$OUT/smi_$1.csv" | sort -n | awk '{p[NR]=$1} END {
    if (NR) printf "power min %.0f, median %.0f, max %.0f W\n", p[1], p[int((NR+1)/2)], p[NR]}'
}

for STAGE in $STAGES; do
  case $STAGE in
  tests)
    echo "== kernels against the CPU reference"
    timeout 150 "$B/test_gpu_kernels" > "$OUT/gpu_kernels.txt" 2>&1; echo "test_gpu_kernels rc=$?"
    grep -E "FAIL|fail|error" "$OUT/gpu_kernels.txt" | head -20; tail -30 "$OUT/gpu_kernels.txt"
    echo "== attention kernels against the CPU reference"
    timeout 120 "$B/test_attention" --no-bench > "$OUT/attention.txt" 2>&1; echo "test_attention rc=$?"
    tail -5 "$OUT/attention.txt"
    echo "== a small transformer (head size 128) on the GPU against the CPU run of the same plan"
    for q in nf4 none; do
      "$B/qdc" synth models/flux-transformer.json --config small --plan /tmp/small_$q.qplan --quant $q \
        --resolutions 256x256,128x256 --seed 7 -q
    done
    echo "-- qdrun --check (kernels come from the plan's KERN section)"
    "$B/qdrun" --check /tmp/small_nf4.qplan
    timeout 120 "$B/flux_step" /tmp/small_nf4.qplan /tmp/small_none.qplan --resolution 256x256,128x256 --check-cpu \
      --iters 5
    echo "-- without the cuBLASLt GELU epilogue"
    timeout 120 "$B/flux_step" /tmp/small_nf4.qplan --resolution 256x256 --check-cpu --iters 5 --no-gelu-epilogue
    echo "-- eager (no CUDA graph), no overlap"
    timeout 120 "$B/flux_step" /tmp/small_nf4.qplan --resolution 256x256 --check-cpu --iters 5 --no-graph --no-overlap
    echo "-- the whole program every step (conditioning not hoisted)"
    timeout 120 "$B/flux_step" /tmp/small_nf4.qplan --resolution 256x256 --check-cpu --iters 5 --no-hoist
    echo "-- batch 2 (hoisted conditioning in blocks of two rows; slices copy)"
    "$B/qdc" synth models/flux-transformer.json --config small --plan /tmp/small_b2.qplan --quant nf4 \
      --resolutions 256x256 --batch 2 --seed 7 -q --target none
    timeout 120 "$B/flux_step" /tmp/small_b2.qplan --resolution 256x256 --batch 2 --check-cpu --iters 5
    timeout 120 "$B/flux_step" /tmp/small_b2.qplan --resolution 256x256 --batch 2 --check-cpu --iters 5 --no-hoist
    pipeline_tests ;;
  pipeline-tests) pipeline_tests ;;
  stream-tests)
    echo "== the small transformer with streamed weights against the CPU run of the same plan"
    "$B/qdc" synth models/flux-transformer.json --config small --plan /tmp/small_nf4.qplan --quant nf4 \
      --resolutions 256x256 --seed 7 -q
    timeout 120 "$B/flux_step" /tmp/small_nf4.qplan --resolution 256x256 --check-cpu --iters 5
    timeout 120 "$B/flux_step" /tmp/small_nf4.qplan --resolution 256x256 --check-cpu --iters 5 --stream
    timeout 120 "$B/flux_step" /tmp/small_nf4.qplan --resolution 256x256 --check-cpu --iters 5 --stream --slots 3 \
      --no-graph
    timeout 120 "$B/flux_step" /tmp/small_nf4.qplan --resolution 256x256 --check-cpu --iters 5 --stream --no-hoist
    echo "-- q, k and v as one batched GEMM"
    timeout 120 "$B/flux_step" /tmp/small_nf4.qplan --resolution 256x256 --check-cpu --iters 5 --batch-linears ;;
  batch)
    echo "== full-size FLUX.1-dev NF4 step: q, k, v as three GEMMs (default) against one batched GEMM, per GEMM shape"
    /usr/bin/time -f "synth: %e s" "$B/qdc" synth models/flux-transformer.json --plan /tmp/dev_nf4.qplan \
      --quant nf4 --resolutions 1024x1024,512x512 --seed 1 -q
    for flags in "" "--batch-linears"; do
      timeout 200 "$B/flux_step" /tmp/dev_nf4.qplan --resolution 1024x1024,512x512 --iters 20 --gemm-profile $flags \
        --jsonl "$OUT/step.jsonl"
    done ;;
  offload)
    QD_FULL_RESOLUTIONS=1024x1024,512x512 build_full_plan > "$OUT/full_plan.txt" 2>&1; cat "$OUT/full_plan.txt"
    run_offload_steps; run_offload_pipelines ;;
  offload-peer)
    # Our plan builds on the CPU while the peer's model offload runs on the GPU; then ours on the idle GPU.
    nice -n 19 bash -c "$(declare -f build_full_plan); B=$B OUT=$OUT QD_FULL_RESOLUTIONS=1024x1024,512x512 \
      build_full_plan" > "$OUT/full_plan.txt" 2>&1 &
    run_peer_offload
    wait; cat "$OUT/full_plan.txt"
    run_offload_steps; run_offload_pipelines ;;
  concat)
    echo "== the small transformer on CUDA against the CPU: concatenations in place, in parts, copied"
    "$B/qdc" synth models/flux-transformer.json --config small --plan /tmp/small_nf4.qplan --quant nf4 \
      --resolutions 256x256 --seed 7 -q
    "$B/qdc" synth models/flux-transformer.json --config small --plan /tmp/small_b2.qplan --quant nf4 \
      --resolutions 256x256 --batch 2 --seed 7 -q
    for flags in "" "--no-concat-in-place" "--no-concat-in-place --no-concat-parts" "--stream" \
                 "--no-graph --no-overlap"; do
      echo "-- ${flags:-default}"
      timeout 120 "$B/flux_step" /tmp/small_nf4.qplan --resolution 256x256 --check-cpu --iters 5 $flags 2>&1 \
        | grep -a "vs CPU\|error\|FAIL"
    done
    echo "-- batch 2"
    timeout 120 "$B/flux_step" /tmp/small_b2.qplan --resolution 256x256 --batch 2 --check-cpu --iters 5 2>&1 \
      | grep -a "vs CPU\|error\|FAIL"
    QD_QDC=$B/qdc timeout 240 "$B/test_gpu_pipeline" 2>&1 | grep -a -v "^pin \|^upload: [0-9]" | tail -3
    echo "== full-size FLUX.1-dev step: in place, in parts, copied (NF4), and bf16"
    "$B/qdc" synth models/flux-transformer.json --plan /tmp/dev_nf4.qplan --quant nf4 \
      --resolutions 1024x1024,512x512 --seed 1 -q
    for flags in "" "--no-concat-in-place" "--no-concat-in-place --no-concat-parts" ""; do
      echo "-- ${flags:-default}"
      timeout 150 "$B/flux_step" /tmp/dev_nf4.qplan --resolution 1024x1024,512x512 --iters 30 $flags \
        --jsonl "$OUT/step.jsonl" 2>&1 | grep -a "^dev_nf4"
    done
    rm -f /tmp/dev_nf4.qplan
    if [ -z "${QD_NO_BF16:-}" ]; then
      "$B/qdc" synth models/flux-transformer.json --plan /tmp/dev_bf16.qplan --quant none \
        --resolutions 1024x1024 --seed 1 -q
      timeout 150 "$B/flux_step" /tmp/dev_bf16.qplan --resolution 1024x1024 --iters 30 \
        --jsonl "$OUT/step.jsonl" 2>&1 | grep -a "^dev_bf16"
      rm -f /tmp/dev_bf16.qplan
    fi ;;
  tiles)
    echo "== the small pipeline (every schedule, tiled decoding, allocation failures) on CUDA against the CPU"
    QD_QDC=$B/qdc timeout 240 "$B/test_gpu_pipeline" 2>&1 | grep -a -v "^pin \|^upload: [0-9]" | tail -14
    QD_FULL_RESOLUTIONS=1024x1024,512x512 build_full_plan > "$OUT/full_plan.txt" 2>&1; cat "$OUT/full_plan.txt"
    # One run per word; '=' and ',' inside a word become spaces.
    for args in ${QD_TILE_RUNS:---offload=none --offload=group --offload=sequential --vram-budget=1.5G \
                --vram-budget=1.25G,--compare-whole --vram-budget=1G --vae-tiling=on}; do
      echo "== the pipeline at 1024x1024: ${args//[=,]/ }"
      timeout 150 "$B/flux_pipeline" /tmp/flux_full.qplan --size 1024x1024 --runs 2 ${args//[=,]/ } \
        --jsonl "$OUT/pipeline.jsonl" 2>&1 | grep -a -v "^pin \|^upload: [0-9]"
    done ;;
  sequential)
    echo "== the small pipeline (every schedule, sequential too) on CUDA against the CPU"
    QD_QDC=$B/qdc timeout 200 "$B/test_gpu_pipeline" 2>&1 | grep -a -v "PASS$" | tail -8
    echo "== full-size FLUX.1-dev NF4 step: resident, streamed by block, streamed layer by layer"
    "$B/qdc" synth models/flux-transformer.json --plan /tmp/dev_nf4.qplan --quant nf4 \
      --resolutions 1024x1024,512x512 --seed 1 -q
    for flags in "" "--stream" "--stream --layers"; do
      timeout 120 "$B/flux_step" /tmp/dev_nf4.qplan --resolution 1024x1024,512x512 --iters 20 $flags \
        --jsonl "$OUT/step.jsonl"
    done ;;
  pin)
    echo "== pinning host memory: one cuMemHostAlloc, pieces from threads, registered anonymous memory"
    timeout 200 "$B/pin_probe" 6
    echo "== the small transformer against the CPU, with the concatenation's parts and without"
    "$B/qdc" synth models/flux-transformer.json --config small --plan /tmp/small_nf4.qplan --quant nf4 \
      --resolutions 256x256 --seed 7 -q
    for flags in "" "--no-concat-parts"; do
      timeout 120 "$B/flux_step" /tmp/small_nf4.qplan --resolution 256x256 --check-cpu --iters 5 $flags \
        --jsonl "$OUT/small.jsonl" 2>&1 | grep -a -i "rel\|fail\|error" ; echo "flux_step $flags rc=$?"
    done
    QD_FULL_RESOLUTIONS=1024x1024 build_full_plan > "$OUT/full_plan.txt" 2>&1; tail -2 "$OUT/full_plan.txt"
    echo "== cold group offload (the first image pins the weights)"
    timeout 150 "$B/flux_pipeline" /tmp/flux_full.qplan --runs 1 --offload group 2>&1 | grep -a -v "^upload: [0-9]" ;;
  final)
    echo "== the small pipeline on CUDA against the CPU (every schedule, tiles, allocation failures)"
    QD_QDC=$B/qdc timeout 240 "$B/test_gpu_pipeline" 2>&1 | grep -a -v "^pin \|^upload: [0-9]" | tail -14
    QD_FULL_RESOLUTIONS=1024x1024 build_full_plan > "$OUT/full_plan.txt" 2>&1; tail -3 "$OUT/full_plan.txt"
    for args in "--offload none --runs 3" "--offload group --runs 1"; do
      echo "== the pipeline at 1024x1024: $args"
      timeout 150 "$B/flux_pipeline" /tmp/flux_full.qplan $args --jsonl "$OUT/pipeline.jsonl" 2>&1 \
        | grep -a -v "^pin \|^upload: [0-9]"
    done ;;
  reuse)
    echo "== the small pipeline on CUDA against the CPU (every schedule, tiles, allocation failures)"
    QD_QDC=$B/qdc timeout 240 "$B/test_gpu_pipeline" > "$OUT/gpu_pipeline.txt" 2>&1; echo "test_gpu_pipeline rc=$?"
    grep -a -E "FAIL|error" "$OUT/gpu_pipeline.txt" | head -5; tail -2 "$OUT/gpu_pipeline.txt"
    QD_FULL_RESOLUTIONS=1024x1024 build_full_plan > "$OUT/full_plan.txt" 2>&1; tail -3 "$OUT/full_plan.txt"
    smi_start reuse
    for args in "--offload none --runs 3 --vae-tiling on" "--offload model --runs 3" "--offload group --runs 3"; do
      echo "== the pipeline at 1024x1024: $args (executors prepared per image: --verbose)"
      timeout 150 "$B/flux_pipeline" /tmp/flux_full.qplan $args --verbose --jsonl "$OUT/pipeline.jsonl" \
        > "$OUT/pipeline_${args//[ -]/_}.txt" 2>&1
      grep -a -E "prepared on the GPU|captured as|^(cold|warm|image|offload)|error" "$OUT/pipeline_${args//[ -]/_}.txt" \
        | sed -e 's/^.*: \(.*prepared on the GPU\)/\1/' | cut -c1-170 | tail -40
    done
    smi_report reuse ;;
  sweep)
    echo "== full-size FLUX.1-dev NF4 step at 1024x1024: each op class alone in the step's order (--class-sweep)"
    "$B/qdc" synth models/flux-transformer.json --plan /tmp/dev_nf4.qplan --quant nf4 --resolutions 1024x1024 \
      --seed 1 -q
    timeout 300 "$B/flux_step" /tmp/dev_nf4.qplan --resolution 1024x1024 --iters 30 --class-sweep \
      --jsonl "$OUT/step.jsonl" ${QD_BENCH_FLAGS:-}
    rm -f /tmp/dev_nf4.qplan ;;
  tune)
    echo "== full-size FLUX.1-dev NF4 step at 1024x1024: GEMM algorithms by heuristic and by tuning, class by class"
    "$B/qdc" synth models/flux-transformer.json --plan /tmp/dev_nf4.qplan --quant nf4 --resolutions 1024x1024 \
      --seed 1 -q
    for flags in "" "--autotune"; do
      echo "-- ${flags:-heuristic}"
      timeout 400 "$B/flux_step" /tmp/dev_nf4.qplan --resolution 1024x1024 --iters 30 --class-sweep $flags \
        --jsonl "$OUT/step.jsonl" 2>&1 | grep -a -v "^upload"
    done
    rm -f /tmp/dev_nf4.qplan ;;
  autotune)
    echo "== qdc tune: the small transformer (tuned against the CPU), the tiny pipeline, the full-size VAE and step"
    "$B/qdc" synth models/flux-transformer.json --config small --plan /tmp/small.qplan --quant nf4 \
      --resolutions 256x256 --seed 7 -q
    timeout 300 "$B/qdc" tune /tmp/small.qplan 2> "$OUT/tune_small.err"; echo "qdc tune rc=$?"; tail -3 "$OUT/tune_small.err"
    for flags in "" "--untuned"; do
      timeout 120 "$B/flux_step" /tmp/small.qplan --resolution 256x256 --check-cpu --iters 10 $flags 2>&1 \
        | grep -a "^small\|vs CPU\|error"
    done
    echo "-- the small pipeline compiled with --autotune default, on the GPU against the CPU (test_gpu_pipeline)"
    QD_TEST_AUTOTUNE=default QD_QDC=$B/qdc timeout 300 "$B/test_gpu_pipeline" > "$OUT/gpu_pipeline_tuned.txt" 2>&1
    echo "test_gpu_pipeline (tuned plan) rc=$?"; grep -a -E "FAIL|error" "$OUT/gpu_pipeline_tuned.txt" | head -5
    tail -2 "$OUT/gpu_pipeline_tuned.txt"
    echo "-- the tiny golden pipeline with --autotune default (its T5 head size has no GPU kernel: not tuned)"
    timeout 200 "$B/qdc" compile tests/data/golden/pipeline_tiny -o /tmp/tiny.qplan --autotune default \
      2> "$OUT/tune_tiny.err" | grep -a -v "^  weights\|^            "
    echo "qdc compile --autotune rc=${PIPESTATUS[0]}"; tail -2 "$OUT/tune_tiny.err"
    "$B/qdc" synth models/flux-vae-decoder.json --plan /tmp/vae.qplan --resolutions 1024x1024 --seed 4 -q
    timeout 400 "$B/qdc" tune /tmp/vae.qplan 2> "$OUT/tune_vae.err"; echo "qdc tune rc=$?"; tail -3 "$OUT/tune_vae.err"
    rm -f /tmp/vae.qplan
    if [ -z "${QD_NO_FULL_TUNE:-}" ]; then
      "$B/qdc" synth models/flux-transformer.json --plan /tmp/dev_nf4.qplan --quant nf4 --resolutions 1024x1024 \
        --seed 1 -q
      timeout 400 "$B/qdc" tune /tmp/dev_nf4.qplan 2> "$OUT/tune_dev.err"; echo "qdc tune rc=$?"
      tail -3 "$OUT/tune_dev.err"
      for flags in "--untuned" "" "--untuned" ""; do
        timeout 150 "$B/flux_step" /tmp/dev_nf4.qplan --resolution 1024x1024 --iters 20 $flags \
          --jsonl "$OUT/step.jsonl" 2>&1 | grep -a "^dev_nf4\|timed steps\|error"
      done
      rm -f /tmp/dev_nf4.qplan
    fi ;;
  probe)
    timeout 120 python3 "$CARRY/probe/pin_probe.py" 2>&1 | tail -12 ;;
  kernel-tests)
    echo "== kernels against the CPU reference (correctness only)"
    timeout 150 "$B/test_gpu_kernels" --no-bench > "$OUT/gpu_kernels.txt" 2>&1; echo "test_gpu_kernels rc=$?"
    grep -E "FAIL|error" "$OUT/gpu_kernels.txt" | head -20; tail -1 "$OUT/gpu_kernels.txt"
    timeout 120 "$B/test_attention" --no-bench > "$OUT/attention.txt" 2>&1; echo "test_attention rc=$?"
    tail -1 "$OUT/attention.txt"
    for t in test_gpu_text_kernels test_gpu_image_kernels; do
      timeout 200 "$B/$t" --no-bench ${QD_KERNEL_TESTS_ONLY:+--only $QD_KERNEL_TESTS_ONLY} > "$OUT/$t.txt" 2>&1
      echo "$t rc=$?"; grep -E "FAIL|error" "$OUT/$t.txt" | head -10; tail -1 "$OUT/$t.txt"
    done ;;
  nf4|bf16)
    quant=$STAGE; [ "$quant" = bf16 ] && quant=none
    echo "== full-size FLUX.1-dev, $STAGE plan"
    /usr/bin/time -f "synth: %e s" "$B/qdc" synth models/flux-transformer.json --plan /tmp/dev_$STAGE.qplan \
      --quant $quant --resolutions 1024x1024,512x512 --seed 1 -q
    smi_start $STAGE
    timeout 240 "$B/flux_step" /tmp/dev_$STAGE.qplan --resolution 1024x1024,512x512 --iters 20 \
      --jsonl "$OUT/step.jsonl" ${QD_BENCH_FLAGS:-}
    smi_report $STAGE
    echo "-- the same without hoisting the conditioning"
    timeout 240 "$B/flux_step" /tmp/dev_$STAGE.qplan --resolution 1024x1024,512x512 --iters 20 --no-hoist \
      --jsonl "$OUT/step.jsonl" ${QD_BENCH_FLAGS:-}
    rm -f /tmp/dev_$STAGE.qplan ;;
  pipeline)
    build_full_plan > "$OUT/full_plan.txt" 2>&1; cat "$OUT/full_plan.txt"
    run_full_pipeline ;;
  pipeline-peer)
    # Our plan builds on the CPU while the peer (GPU) runs; then ours runs on the idle GPU.
    nice -n 19 bash -c "$(declare -f build_full_plan); B=$B OUT=$OUT build_full_plan" > "$OUT/full_plan.txt" 2>&1 &
    run_peer_pipeline
    wait; cat "$OUT/full_plan.txt"
    run_full_pipeline ;;
  peer)
    echo "== the peer: diffusers + bitsandbytes NF4 + torch.compile, transformer step"
    python3 -m pip install -q --no-index --no-deps --target /tmp/site "$CARRY"/peer/*.whl >/dev/null 2>&1
    export PYTHONPATH=/tmp/site:$PWD/$CARRY/peer/bnb PYTHONUNBUFFERED=1 OUT
    (timeout 300 python3 "$CARRY/peer/diffusers_flux_step.py" nf4 --compile --iters 20) 2>&1 | tail -3 ;;
  esac
done
