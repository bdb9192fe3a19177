"""Golden fixtures for models/flux-vae-decoder.json: FluxPipeline's decode step on a tiny diffusers.AutoencoderKL.

Writes, under tests/data/golden/:

  vae_tiny_weights.safetensors  the decoder's tensors of the AutoencoderKL state dict (decoder.*, diffusers' names;
                                the encoder is not part of the graph), all F32.
  vae_tiny_io.safetensors       latents  F32 [2, 12, 16]     packed latents as the transformer produces them, for a
                                                             48 (high) x 64 (wide) image: a 3 x 4 grid of 2x2 patches
                                                             of 4 latent channels
                                image    F32 [2, 3, 48, 64]  exactly what FluxPipeline computes before
                                                             image_processor.postprocess:
                                                             vae.decode(_unpack_latents(latents) / scaling_factor
                                                             + shift_factor)
                                __metadata__: config, seed, versions, width, height, rel_l2_fp32_vs_fp64,
                                real_decoder_parameters.

The tiny AutoencoderKL keeps FLUX's structure and factors (4 levels, layers_per_block 2 so 3 resnets per up block,
mid-block attention with one head over all channels, 3 upsampling up blocks, no quant/post-quant convolutions,
scaling_factor 0.3611, shift_factor 0.1159) at block_out_channels (8, 12, 16, 16) with 4 groups, so that two up
blocks change their channel count (conv_shortcut) as FLUX's do. Weights: Conv2d and Linear weights N(0, 1/fan_in),
biases N(0, 0.05^2), GroupNorm weights 1 + N(0, 0.1^2).

Also builds the FLUX.1 VAE (AutoencoderKL with FLUX's config) on the meta device and prints its decoder's parameter
count, which tests/test_golden_encoders.c checks against the graph.

Usage: .venv-golden/bin/python tools/golden/vae.py  (tools/golden/regenerate.sh runs it).
"""

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import component_common as cc  # noqa: E402
import golden_common as gc  # noqa: E402

import diffusers  # noqa: E402
from diffusers import AutoencoderKL  # noqa: E402
from diffusers.pipelines.flux.pipeline_flux import FluxPipeline  # noqa: E402

SEED = 13
COMMON = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
              up_block_types=["UpDecoderBlock2D"] * 4, layers_per_block=2, act_fn="silu",
              scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False,
              mid_block_add_attention=True)
TINY = dict(COMMON, block_out_channels=[8, 12, 16, 16], latent_channels=4, norm_num_groups=4, sample_size=64)
# black-forest-labs/FLUX.1-dev vae/config.json
REAL = dict(COMMON, block_out_channels=[128, 256, 512, 512], latent_channels=16, norm_num_groups=32,
            sample_size=1024)
REAL_DECODER_PARAMETERS = 49_545_475
HEIGHT, WIDTH, BATCH = 48, 64, 2


def init_rule(gen):
    def rule(name, p):
        if name.endswith(".bias"):
            return torch.randn(p.shape, generator=gen) * 0.05
        if p.ndim == 1:  # GroupNorm weights (norm1, norm2, group_norm, conv_norm_out)
            return 1.0 + torch.randn(p.shape, generator=gen) * 0.1
        if p.ndim in (2, 4):
            return cc.fan_in_normal(p, gen)
        return None
    return rule


def decode(vae, latents):
    """FluxPipeline.__call__'s decode step, verbatim except for the device moves."""
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    z = FluxPipeline._unpack_latents(latents, HEIGHT, WIDTH, scale)
    z = (z / vae.config.scaling_factor) + vae.config.shift_factor
    return vae.decode(z, return_dict=False)[0]


def decoder_params(vae):
    return [(n, p) for n, p in vae.named_parameters() if n.startswith("decoder.")]


def main():
    gc.deterministic_torch()
    out_dir = gc.out_dir()
    gen = torch.Generator().manual_seed(SEED)
    vae = AutoencoderKL(**TINY).eval()
    if vae.quant_conv is not None or vae.post_quant_conv is not None:
        raise RuntimeError("the tiny VAE has quant convolutions; FLUX's has none")
    cc.init_params(vae.named_parameters(), gen, init_rule(gen))
    packed = 4 * TINY["latent_channels"]
    latents = torch.randn(BATCH, (HEIGHT // 16) * (WIDTH // 16), packed, generator=gen)

    with torch.no_grad():
        out32 = decode(vae, latents)
        out64 = decode(vae.double(), latents.double())
    vae.float()
    err = cc.fp64_cross_check([out32], [out64])
    worst = cc.check_every_weight_matters(vae, decoder_params, lambda m: [decode(m, latents)], SEED + 1000)
    with torch.device("meta"):
        real_vae = AutoencoderKL(**REAL)
    real = sum(p.numel() for _, p in decoder_params(real_vae))
    if real != REAL_DECODER_PARAMETERS:
        raise RuntimeError(f"FLUX's VAE decoder has {real} parameters, not {REAL_DECODER_PARAMETERS}")

    sd = {k: v.detach().clone().contiguous() for k, v in vae.state_dict().items() if k.startswith("decoder.")}
    if any(v.dtype != torch.float32 for v in sd.values()):
        raise RuntimeError("state dict is not all float32")
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vae.config.items() if not k.startswith("_")}
    config["_class_name"] = "AutoencoderKL"
    meta = {"config": json.dumps(config, sort_keys=True), "seed": str(SEED), "torch_version": torch.__version__,
            "diffusers_version": diffusers.__version__}
    weights = os.path.join(out_dir, "vae_tiny_weights.safetensors")
    gc.write_safetensors(weights, sd, meta)
    io = {"latents": latents.contiguous(), "image": out32.contiguous()}
    io_path = os.path.join(out_dir, "vae_tiny_io.safetensors")
    gc.write_safetensors(io_path, io, dict(meta, width=str(WIDTH), height=str(HEIGHT), rel_l2_fp32_vs_fp64=repr(err),
                                           real_decoder_parameters=str(real)))
    print(f"vae tiny: {len(sd)} decoder tensors; image {tuple(out32.shape)} std {float(out32.std()):.3f}; fp32 vs "
          f"fp64 relative L2 {err:.3e}; least-influential parameter {worst[0]} (|grad|*|w| = {worst[1]:.2e})")
    print(f"vae: AutoencoderKL with FLUX.1's config (meta device): decoder {real:,} parameters, whole model "
          f"{sum(p.numel() for p in real_vae.parameters()):,}")
    rows = [(os.path.relpath(p, gc.repo_root()), os.path.getsize(p), gc.sha256_file(p)[:16]) for p in (weights, io_path)]
    gc.print_table("\nvae.py fixtures", ["file", "bytes", "sha256[:16]"], rows)


if __name__ == "__main__":
    main()
