#!/bin/sh
# The main job on a built-in tiny default. Until the pipeline exists: write a tiny safetensors file, inspect it,
# and list the GPUs.
set -eu
build=${1:-build}
mkdir -p demo
python3 tools/make_demo_safetensors.py demo/tiny.safetensors
"$build/qdc" inspect demo/tiny.safetensors
"$build/qdrun" --devices
