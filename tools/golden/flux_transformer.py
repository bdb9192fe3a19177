"""Golden fixtures for the FLUX transformer: tiny diffusers.FluxTransformer2DModel configurations with seeded weights.

For each configuration in CONFIGS this writes, under tests/data/golden/:

  flux_<name>_weights.safetensors  the diffusers state dict (diffusers parameter names), all F32.
  flux_<name>_io.safetensors       the forward pass, all F32:
                                     hidden_states          [B, N_img, in_channels]
                                     encoder_hidden_states  [B, N_txt, joint_attention_dim]
                                     pooled_projections     [B, pooled_projection_dim]
                                     timestep               [B]   in [0, 1]; the model multiplies it by 1000
                                     img_ids                [N_img, 3]  (0, row, col), row-major over the packed grid
                                     txt_ids                [N_txt, 3]  zeros
                                     guidance               [B]   only when guidance_embeds (also times 1000 inside)
                                     output                 [B, N_img, out_channels]  the model's `sample`
                                   __metadata__: config (the model config as JSON), seed, torch_version,
                                   diffusers_version, grid ("HxW" of the packed latent grid), rel_l2_fp32_vs_fp64.
  flux_<name>_bfl.safetensors      the same weights in the single-file black-forest-labs layout (see to_bfl()).

Weights: every parameter is redrawn from one seeded torch.Generator in state-dict order: Linear weights from
N(0, (gain / sqrt(fan_in))^2) (gain 1, or 0.5 for the AdaLN modulation projections so that scale/shift/gate stay
O(1)), biases from N(0, 0.05^2), RMSNorm weights from 1 + N(0, 0.1^2). The script checks that the output depends on
every parameter (no zero gradient of a random projection of the output).

The forward pass runs on the CPU in float32; the same model and inputs in float64 are a cross-check whose relative L2
difference is printed and stored. (diffusers computes the sinusoidal timestep embedding and the RoPE tables in
float32 whatever the model dtype, so the float64 run differs from the float32 one only past those.)

The BFL file is verified by converting it back with diffusers' own
diffusers.loaders.single_file_utils.convert_flux_transformer_checkpoint_to_diffusers and comparing every tensor with
the original. That converter hard-codes FLUX.1's inner_dim = 3072 (it uses it to split single_blocks.N.linear1 into
q, k, v and mlp); the check runs the converter's own source with that one constant set to the tiny model's
inner_dim, and nothing else changed.

Usage: .venv-golden/bin/python tools/golden/flux_transformer.py  (tools/golden/regenerate.sh runs it).
"""

import copy
import inspect
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_common as gc  # noqa: E402

import diffusers  # noqa: E402
from diffusers import FluxTransformer2DModel  # noqa: E402
from diffusers.loaders import single_file_utils  # noqa: E402
from diffusers.pipelines.flux.pipeline_flux import FluxPipeline  # noqa: E402

CONFIGS = {
    "guided": {
        "seed": 1,
        "model": dict(
            patch_size=1,
            in_channels=16,
            out_channels=None,
            num_layers=2,
            num_single_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=24,
            guidance_embeds=True,
            axes_dims_rope=(4, 6, 6),
        ),
        "batch": 2,
        "grid": (4, 6),
        "txt_len": 7,
        "timestep": [0.25, 0.9],
        "guidance": [3.5, 1.0],
    },
    "plain": {
        "seed": 2,
        "model": dict(
            patch_size=1,
            in_channels=12,
            num_layers=1,
            num_single_layers=3,
            attention_head_dim=8,
            num_attention_heads=3,
            joint_attention_dim=20,
            pooled_projection_dim=16,
            guidance_embeds=False,
            axes_dims_rope=(2, 2, 4),
        ),
        "batch": 1,
        "grid": (3, 5),
        "txt_len": 5,
        "timestep": [0.6],
        "guidance": None,
    },
}

MODULATION_SUFFIXES = ("norm1.linear.weight", "norm1_context.linear.weight", "norm.linear.weight",
                       "norm_out.linear.weight")


def init_weights(model, gen):
    with torch.no_grad():
        for name, p in model.state_dict(keep_vars=True).items():
            if name.endswith(".bias"):
                v = torch.randn(p.shape, generator=gen) * 0.05
            elif ".norm_" in name and p.ndim == 1:  # RMSNorm weights: norm_q, norm_k, norm_added_q, norm_added_k
                v = 1.0 + torch.randn(p.shape, generator=gen) * 0.1
            elif p.ndim == 2:
                gain = 0.5 if name.endswith(MODULATION_SUFFIXES) else 1.0
                v = torch.randn(p.shape, generator=gen) * (gain / math.sqrt(p.shape[1]))
            else:
                raise RuntimeError(f"no initialisation rule for parameter '{name}' {tuple(p.shape)}")
            p.copy_(v.to(p.dtype))


def make_inputs(cfg, gen):
    m = cfg["model"]
    b = cfg["batch"]
    h, w = cfg["grid"]
    n_img = h * w
    inputs = {
        "hidden_states": torch.randn(b, n_img, m["in_channels"], generator=gen),
        "encoder_hidden_states": torch.randn(b, cfg["txt_len"], m["joint_attention_dim"], generator=gen),
        "pooled_projections": torch.randn(b, m["pooled_projection_dim"], generator=gen),
        "timestep": torch.tensor(cfg["timestep"], dtype=torch.float32),
        # exactly what FluxPipeline passes: height/width here are the packed (2x2-patchified) latent grid
        "img_ids": FluxPipeline._prepare_latent_image_ids(b, h, w, torch.device("cpu"), torch.float32),
        "txt_ids": torch.zeros(cfg["txt_len"], 3, dtype=torch.float32),
    }
    if cfg["guidance"] is not None:
        inputs["guidance"] = torch.tensor(cfg["guidance"], dtype=torch.float32)
    return inputs


def run(model, inputs, dtype):
    cast = {k: (v.to(dtype) if k not in ("img_ids", "txt_ids") else v) for k, v in inputs.items()}
    with torch.no_grad():
        return model(**cast, return_dict=False)[0]


def check_every_weight_matters(model, inputs, gen_seed):
    """Gradient of a fixed random projection of the output with respect to every parameter must be non-zero."""
    model = copy.deepcopy(model)
    for p in model.parameters():
        p.requires_grad_(True)
    out = model(**inputs, return_dict=False)[0]
    g = torch.Generator().manual_seed(gen_seed)
    proj = torch.randn(out.shape, generator=g)
    (out * proj).sum().backward()
    worst = None
    for name, p in model.named_parameters():
        rel = float(p.grad.norm() * p.detach().norm())
        if worst is None or rel < worst[1]:
            worst = (name, rel)
        if not torch.isfinite(p.grad).all() or float(p.grad.abs().max()) == 0.0:
            raise RuntimeError(f"parameter '{name}' does not influence the output")
    return worst


# ---------------------------------------------------------------------------------------------------------------
# diffusers -> BFL (black-forest-labs single-file) layout


def swap_halves(t):
    """diffusers' norm_out.linear produces (scale, shift); BFL's final_layer.adaLN_modulation.1 produces (shift,
    scale). The same swap maps either way."""
    a, b = t.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def to_bfl(sd, num_layers, num_single_layers, has_guidance):
    out = {}

    def lin(dst, src):
        out[dst + ".weight"] = sd[src + ".weight"]
        out[dst + ".bias"] = sd[src + ".bias"]

    def fused(dst, srcs):
        out[dst + ".weight"] = torch.cat([sd[s + ".weight"] for s in srcs], dim=0)
        out[dst + ".bias"] = torch.cat([sd[s + ".bias"] for s in srcs], dim=0)

    lin("img_in", "x_embedder")
    lin("txt_in", "context_embedder")
    lin("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1")
    lin("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2")
    lin("vector_in.in_layer", "time_text_embed.text_embedder.linear_1")
    lin("vector_in.out_layer", "time_text_embed.text_embedder.linear_2")
    if has_guidance:
        lin("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1")
        lin("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2")
    for i in range(num_layers):
        d, s = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        lin(d + "img_mod.lin", s + "norm1.linear")
        lin(d + "txt_mod.lin", s + "norm1_context.linear")
        fused(d + "img_attn.qkv", [s + "attn.to_q", s + "attn.to_k", s + "attn.to_v"])
        out[d + "img_attn.norm.query_norm.scale"] = sd[s + "attn.norm_q.weight"]
        out[d + "img_attn.norm.key_norm.scale"] = sd[s + "attn.norm_k.weight"]
        lin(d + "img_attn.proj", s + "attn.to_out.0")
        lin(d + "img_mlp.0", s + "ff.net.0.proj")
        lin(d + "img_mlp.2", s + "ff.net.2")
        fused(d + "txt_attn.qkv", [s + "attn.add_q_proj", s + "attn.add_k_proj", s + "attn.add_v_proj"])
        out[d + "txt_attn.norm.query_norm.scale"] = sd[s + "attn.norm_added_q.weight"]
        out[d + "txt_attn.norm.key_norm.scale"] = sd[s + "attn.norm_added_k.weight"]
        lin(d + "txt_attn.proj", s + "attn.to_add_out")
        lin(d + "txt_mlp.0", s + "ff_context.net.0.proj")
        lin(d + "txt_mlp.2", s + "ff_context.net.2")
    for i in range(num_single_layers):
        d, s = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        fused(d + "linear1", [s + "attn.to_q", s + "attn.to_k", s + "attn.to_v", s + "proj_mlp"])
        lin(d + "linear2", s + "proj_out")
        out[d + "norm.query_norm.scale"] = sd[s + "attn.norm_q.weight"]
        out[d + "norm.key_norm.scale"] = sd[s + "attn.norm_k.weight"]
        lin(d + "modulation.lin", s + "norm.linear")
    lin("final_layer.linear", "proj_out")
    out["final_layer.adaLN_modulation.1.weight"] = swap_halves(sd["norm_out.linear.weight"])
    out["final_layer.adaLN_modulation.1.bias"] = swap_halves(sd["norm_out.linear.bias"])
    return {k: v.contiguous() for k, v in out.items()}


def diffusers_bfl_converter(inner_dim):
    """diffusers' own BFL -> diffusers converter, with its hard-coded FLUX.1 inner_dim replaced (see module doc)."""
    fn = single_file_utils.convert_flux_transformer_checkpoint_to_diffusers
    src = inspect.getsource(fn)
    needle = "inner_dim = 3072"
    if src.count(needle) != 1:
        raise RuntimeError(f"diffusers {diffusers.__version__}: converter no longer contains '{needle}' exactly once")
    namespace = dict(vars(single_file_utils))
    exec(compile(src.replace(needle, f"inner_dim = {inner_dim}"), inspect.getsourcefile(fn), "exec"), namespace)
    return namespace[fn.__name__]


def verify_bfl(bfl, sd, inner_dim):
    checkpoint = {k: v.clone() for k, v in bfl.items()}
    back = diffusers_bfl_converter(inner_dim)(checkpoint)
    if checkpoint:
        raise RuntimeError(f"BFL keys the diffusers converter did not consume: {sorted(checkpoint)}")
    if set(back) != set(sd):
        raise RuntimeError(f"converted-back names differ: missing {sorted(set(sd) - set(back))}, "
                           f"extra {sorted(set(back) - set(sd))}")
    for k in sd:
        if back[k].shape != sd[k].shape or not torch.equal(back[k], sd[k]):
            raise RuntimeError(f"converted-back tensor '{k}' differs from the original")
    return len(back)


# ---------------------------------------------------------------------------------------------------------------


def generate(name, cfg, out_dir):
    seed = cfg["seed"]
    gen = torch.Generator().manual_seed(seed)
    model = FluxTransformer2DModel(**cfg["model"]).eval()
    init_weights(model, gen)
    inputs = make_inputs(cfg, gen)

    out32 = run(model, inputs, torch.float32)
    out64 = run(copy.deepcopy(model).double(), inputs, torch.float64)
    err = gc.rel_l2(out32, out64)
    worst = check_every_weight_matters(model, inputs, seed + 1000)

    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if any(v.dtype != torch.float32 for v in sd.values()):
        raise RuntimeError("state dict is not all float32")
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in model.config.items() if not k.startswith("_")}
    config["_class_name"] = "FluxTransformer2DModel"
    metadata = {
        "config": json.dumps(config, sort_keys=True),
        "seed": str(seed),
        "torch_version": torch.__version__,
        "diffusers_version": diffusers.__version__,
        "grid": f"{cfg['grid'][0]}x{cfg['grid'][1]}",
        "rel_l2_fp32_vs_fp64": repr(err),
    }

    paths = {}
    paths["weights"] = os.path.join(out_dir, f"flux_{name}_weights.safetensors")
    gc.write_safetensors(paths["weights"], sd, {k: metadata[k] for k in ("config", "seed", "torch_version",
                                                                         "diffusers_version")})
    io = dict(inputs)
    io["output"] = out32.contiguous()
    paths["io"] = os.path.join(out_dir, f"flux_{name}_io.safetensors")
    gc.write_safetensors(paths["io"], io, metadata)

    m = cfg["model"]
    bfl = to_bfl(sd, m["num_layers"], m["num_single_layers"], m["guidance_embeds"])
    n_back = verify_bfl(bfl, sd, m["num_attention_heads"] * m["attention_head_dim"])
    paths["bfl"] = os.path.join(out_dir, f"flux_{name}_bfl.safetensors")
    gc.write_safetensors(paths["bfl"], bfl, {k: metadata[k] for k in ("config", "seed", "torch_version",
                                                                     "diffusers_version")})
    print(f"flux {name}: {len(sd)} diffusers tensors, {len(bfl)} BFL tensors; BFL -> diffusers converter "
          f"round trip: {n_back}/{len(sd)} tensors identical")
    print(f"flux {name}: output {tuple(out32.shape)} std {float(out32.std()):.4f}; fp32 vs fp64 relative L2 "
          f"{err:.3e}; least-influential parameter {worst[0]} (|grad|*|w| = {worst[1]:.2e})")
    return paths, err


def main():
    gc.deterministic_torch()
    out_dir = gc.out_dir()
    rows = []
    for name, cfg in CONFIGS.items():
        paths, err = generate(name, cfg, out_dir)
        for kind, p in paths.items():
            rows.append((os.path.relpath(p, gc.repo_root()), os.path.getsize(p), f"{err:.2e}" if kind == "io" else "",
                         gc.sha256_file(p)[:16]))
    gc.print_table("\nflux_transformer.py fixtures", ["file", "bytes", "fp32-vs-fp64", "sha256[:16]"], rows)


if __name__ == "__main__":
    main()
