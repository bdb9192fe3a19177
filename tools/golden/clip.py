"""Golden fixtures for models/clip-l.json: a tiny transformers.CLIPTextModel with seeded weights.

Writes, under tests/data/golden/:

  clip_tiny_weights.safetensors  the state dict under the names FLUX.1's text_encoder/model.safetensors uses
                                 (text_model.*; transformers 5 saves them without that prefix and reads either),
                                 all F32. Checked to load back through CLIPTextModel.from_pretrained with nothing
                                 missing or unexpected.
  clip_tiny_io.safetensors       input_ids          I32 [2, 16]  the end token at positions 6 and 11: row 0 padded
                                                                 with the end token as FLUX's CLIP tokenizer pads,
                                                                 row 1 with other ids and a second end token later
                                                                 (the first one counts)
                                 last_hidden_state  F32 [2, 16, 32]
                                 pooled             F32 [2, 32]  pooler_output (what FluxPipeline passes on)
                                 __metadata__: config, seed, versions, rel_l2_fp32_vs_fp64, real_parameters.

The tiny config has eos_token_id 299 (!= 2), so transformers pools at the first end token, the rule
models/clip-l.json implements; max_position_embeddings (20) exceeds the sequence (16) so that only the first
position rows must be used. Weights: Linear weights N(0, 1/fan_in), biases N(0, 0.05^2), LayerNorm weights
1 + N(0, 0.1^2), token embeddings N(0, 1), position embeddings N(0, 0.5^2).

Also builds CLIP ViT-L/14's text tower with its real configuration on the meta device and checks its parameter count
against the graph's (123,060,480).

Usage: .venv-golden/bin/python tools/golden/clip.py  (tools/golden/regenerate.sh runs it).
"""

import json
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import component_common as cc  # noqa: E402
import golden_common as gc  # noqa: E402

import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402

SEED = 11
TINY = dict(vocab_size=300, hidden_size=32, intermediate_size=56, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=20, hidden_act="quick_gelu", layer_norm_eps=1e-5, bos_token_id=298,
            eos_token_id=299, pad_token_id=299, projection_dim=32)
# CLIP ViT-L/14's text config (openai/clip-vit-large-patch14, FLUX.1's text_encoder/config.json).
REAL = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
            max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768)
REAL_PARAMETERS = 123_060_480  # what models/clip-l.json declares (tests/test_golden_encoders.c checks the graph)
TOKENS = 16
EOS_AT = (6, 11)


def init_rule(gen):
    def rule(name, p):
        if name.endswith("token_embedding.weight"):
            return torch.randn(p.shape, generator=gen)
        if name.endswith("position_embedding.weight"):
            return torch.randn(p.shape, generator=gen) * 0.5
        if name.endswith(".bias"):
            return torch.randn(p.shape, generator=gen) * 0.05
        if "layer_norm" in name and p.ndim == 1:
            return 1.0 + torch.randn(p.shape, generator=gen) * 0.1
        if p.ndim == 2:
            return cc.fan_in_normal(p, gen)
        return None
    return rule


def make_ids(gen):
    eos, bos = TINY["eos_token_id"], TINY["bos_token_id"]
    ids = torch.randint(0, bos, (2, TOKENS), generator=gen, dtype=torch.int64)
    ids[:, 0] = bos
    ids[0, EOS_AT[0]:] = eos
    ids[1, EOS_AT[1]] = eos
    ids[1, EOS_AT[1] + 3] = eos
    for row, at in enumerate(EOS_AT):
        first = int((ids[row] == eos).int().argmax())
        if first != at:
            raise RuntimeError(f"row {row}: first end token at {first}, meant {at}")
    return ids


def run(model, ids):
    with torch.no_grad():
        out = model(input_ids=ids)
    return out.last_hidden_state, out.pooler_output


def check_loads(sd, config, model):
    """The fixture's names are a valid CLIPTextModel checkpoint: from_pretrained reads every tensor."""
    with tempfile.TemporaryDirectory() as d:
        config.save_pretrained(d)
        gc.write_safetensors(os.path.join(d, "model.safetensors"), sd, {"format": "pt"})
        back, info = CLIPTextModel.from_pretrained(d, output_loading_info=True)
    if any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")):
        raise RuntimeError(f"the weights file does not load cleanly: {info}")
    for k, v in model.state_dict().items():
        if not torch.equal(back.state_dict()[k], v):
            raise RuntimeError(f"'{k}' differs after loading the weights file")


def main():
    gc.deterministic_torch()
    out_dir = gc.out_dir()
    gen = torch.Generator().manual_seed(SEED)
    config = CLIPTextConfig(**TINY)
    model = CLIPTextModel(config).eval()
    cc.init_params(model.named_parameters(), gen, init_rule(gen))
    ids = make_ids(gen)

    out32 = run(model, ids)
    out64 = run(model.double(), ids)
    model.float()
    err = cc.fp64_cross_check(out32, out64)
    worst = cc.check_every_weight_matters(model, lambda m: m.named_parameters(), lambda m: m(input_ids=ids)[:2],
                                          SEED + 1000)
    real = cc.meta_parameter_count(lambda: CLIPTextModel(CLIPTextConfig(**REAL)))
    if real != REAL_PARAMETERS:
        raise RuntimeError(f"CLIPTextModel with CLIP-L's config has {real} parameters, not {REAL_PARAMETERS}")

    sd = {"text_model." + k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if any(v.dtype != torch.float32 for v in sd.values()):
        raise RuntimeError("state dict is not all float32")
    check_loads(sd, config, model)
    meta = {"config": json.dumps({k: v for k, v in config.to_dict().items() if not k.startswith("_")},
                                 sort_keys=True, default=str),
            "seed": str(SEED), "torch_version": torch.__version__, "transformers_version": transformers.__version__}
    weights = os.path.join(out_dir, "clip_tiny_weights.safetensors")
    gc.write_safetensors(weights, sd, meta)
    io = {"input_ids": ids.to(torch.int32), "last_hidden_state": out32[0].contiguous(),
          "pooled": out32[1].contiguous()}
    meta = dict(meta, rel_l2_fp32_vs_fp64=repr(err), real_parameters=str(real))
    io_path = os.path.join(out_dir, "clip_tiny_io.safetensors")
    gc.write_safetensors(io_path, io, meta)
    with safe_open(io_path, framework="pt") as f:
        assert f.get_tensor("input_ids").dtype == torch.int32
    print(f"clip tiny: {len(sd)} tensors; fp32 vs fp64 relative L2 {err:.3e}; least-influential parameter "
          f"{worst[0]} (|grad|*|w| = {worst[1]:.2e})")
    print(f"clip: CLIPTextModel with CLIP ViT-L/14's text config (meta device): {real:,} parameters")
    rows = [(os.path.relpath(p, gc.repo_root()), os.path.getsize(p), gc.sha256_file(p)[:16]) for p in (weights, io_path)]
    gc.print_table("\nclip.py fixtures", ["file", "bytes", "sha256[:16]"], rows)


if __name__ == "__main__":
    main()
