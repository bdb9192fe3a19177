#!/bin/sh
# make demo: the whole job on a tiny pipeline, with nothing to download.
#   1. synthesize a diffusers FLUX directory: seeded random weights for the four components at the graphs'
#      "tiny-pipeline" sizes (qdc synth), the small synthetic tokenizers, FLUX.1-dev's scheduler config;
#   2. compile it into one plan (qdc compile DIR);
#   3. generate an image from a prompt on the CPU (qdrun PLAN --prompt), written to demo/demo.png.
# Random weights draw noise, not a picture: the demo shows the machinery, not a model.
set -eu
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/demo"
dir="$out/tiny-pipeline"
models="$root/models"
qdc="$build/qdc"
qdrun="$build/qdrun"

rm -rf "$dir"
mkdir -p "$dir/transformer" "$dir/text_encoder" "$dir/text_encoder_2" "$dir/vae" "$dir/scheduler"
echo "demo: synthesizing a tiny FLUX pipeline in $dir (seeded random weights)"
"$qdc" synth "$models/flux-transformer.json" --config tiny-pipeline --seed 1 --dtype f32 -q \
  -o "$dir/transformer/diffusion_pytorch_model.safetensors"
"$qdc" synth "$models/clip-l.json" --config tiny-pipeline --seed 2 --dtype f32 -q -o "$dir/text_encoder/model.safetensors"
"$qdc" synth "$models/t5-xxl-encoder.json" --config tiny-pipeline --seed 3 --dtype f32 -q \
  -o "$dir/text_encoder_2/model.safetensors"
"$qdc" synth "$models/flux-vae-decoder.json" --config tiny-pipeline --seed 4 --dtype f32 -q \
  -o "$dir/vae/diffusion_pytorch_model.safetensors"
# The tokenizers the tiny encoders were sized for (1,200 CLIP ids, 800 T5 ids), in FLUX's folder layout.
cp -R "$root/tests/data/golden/pipeline_tiny/tokenizer" "$root/tests/data/golden/pipeline_tiny/tokenizer_2" "$dir/"
cat > "$dir/model_index.json" <<'JSON'
{
  "_class_name": "FluxPipeline",
  "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
  "text_encoder": ["transformers", "CLIPTextModel"],
  "text_encoder_2": ["transformers", "T5EncoderModel"],
  "tokenizer": ["transformers", "CLIPTokenizer"],
  "tokenizer_2": ["transformers", "T5TokenizerFast"],
  "transformer": ["diffusers", "FluxTransformer2DModel"],
  "vae": ["diffusers", "AutoencoderKL"]
}
JSON
# FLUX.1-dev's scheduler/scheduler_config.json.
cat > "$dir/scheduler/scheduler_config.json" <<'JSON'
{
  "_class_name": "FlowMatchEulerDiscreteScheduler",
  "base_image_seq_len": 256,
  "base_shift": 0.5,
  "max_image_seq_len": 4096,
  "max_shift": 1.15,
  "num_train_timesteps": 1000,
  "shift": 3.0,
  "use_dynamic_shifting": true
}
JSON

echo "demo: compiling it"
"$qdc" compile "$dir" -o "$out/tiny.qplan" --quant none --resolutions 256x256 --target none -q
"$qdc" inspect "$out/tiny.qplan" | head -n 20

echo "demo: generating"
"$qdrun" "$out/tiny.qplan" --prompt "a lighthouse on a cliff at sunset, oil painting" --seed 42 --steps 8 \
  -o "$out/demo.png"
echo
echo "demo: wrote $out/demo.png. Its weights are random numbers, so it shows colored noise, not a lighthouse;"
echo "      the same plan, prompt and seed give the same pixels every time. For real images, compile the FLUX.1"
echo "      diffusers directory (qdc compile FLUX.1-dev/ -o flux.qplan) and run qdrun on that plan."
