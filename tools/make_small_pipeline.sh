#!/bin/sh
# A diffusers FLUX directory at the "small" sizes (head size 64 or 128 everywhere, which the GPU kernels take) with
# seeded random weights and pipeline_tiny's synthetic tokenizers: what tests/gpu/test_gpu_pipeline.c compiles to
# compare the GPU pipeline with the CPU reference. Random weights: the images are noise.
#   tools/make_small_pipeline.sh QDC DIR
set -eu
qdc=$1
dir=$2
root=$(cd "$(dirname "$0")/.." && pwd)
models="$root/models"
rm -rf "$dir"
mkdir -p "$dir/transformer" "$dir/text_encoder" "$dir/text_encoder_2" "$dir/vae" "$dir/scheduler"
"$qdc" synth "$models/flux-transformer.json" --config small --seed 1 -q \
  -o "$dir/transformer/diffusion_pytorch_model.safetensors"
"$qdc" synth "$models/clip-l.json" --config small-pipeline --seed 2 -q -o "$dir/text_encoder/model.safetensors"
"$qdc" synth "$models/t5-xxl-encoder.json" --config small-pipeline --seed 3 -q -o "$dir/text_encoder_2/model.safetensors"
"$qdc" synth "$models/flux-vae-decoder.json" --config small-pipeline --seed 4 -q \
  -o "$dir/vae/diffusion_pytorch_model.safetensors"
cp -R "$root/tests/data/golden/pipeline_tiny/tokenizer" "$root/tests/data/golden/pipeline_tiny/tokenizer_2" \
  "$root/tests/data/golden/pipeline_tiny/scheduler" "$root/tests/data/golden/pipeline_tiny/model_index.json" "$dir/"
