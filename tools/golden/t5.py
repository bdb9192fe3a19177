"""Golden fixtures for models/t5-xxl-encoder.json: a tiny transformers.T5EncoderModel with seeded weights.

Writes, under tests/data/golden/:

  t5_tiny_weights.safetensors  the tensors save_pretrained writes (the tied embedding once, as shared.weight),
                               all F32.
  t5_tiny_io.safetensors       input_ids          I32 [2, 24]  random ids, row 1 ending in padding (0) as the
                                                               tokenizer pads; no attention mask, as FluxPipeline
                               last_hidden_state  F32 [2, 24, 32]
                               buckets_tiny       I64 [47]     T5Attention._relative_position_bucket of the
                                                               relative positions -23..23 (tiny config)
                               buckets_xxl        I64 [2047]   the same for -1023..1023 with t5-v1_1-xxl's 32
                                                               buckets and max distance 128, bidirectional
                               __metadata__: config, seed, versions, rel_l2_fp32_vs_fp64, real_parameters.

The tiny config: d_model 32, 4 heads of 6 (inner 24 != d_model), d_ff 40, 2 layers, gated-gelu (gelu_new), 16
buckets (8 per direction: 4 exact distances, then log-spaced up to max distance 16). 24 tokens reach distances up to
23, so the exact, every log-spaced and the clamped (>= max distance) buckets all occur (checked below). Weights:
Linear weights N(0, 1/fan_in), T5LayerNorm weights 1 + N(0, 0.1^2), the embedding N(0, 1), the relative attention
bias N(0, 1).

Also builds t5-v1_1-xxl's encoder with its real configuration on the meta device and checks its parameter count
against the graph's (4,762,310,656, the shared embedding counted once).

Usage: .venv-golden/bin/python tools/golden/t5.py  (tools/golden/regenerate.sh runs it).
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
from transformers import T5Config, T5EncoderModel  # noqa: E402
from transformers.models.t5.modeling_t5 import T5Attention  # noqa: E402

SEED = 12
TINY = dict(vocab_size=200, d_model=32, d_kv=6, d_ff=40, num_layers=2, num_heads=4,
            relative_attention_num_buckets=16, relative_attention_max_distance=16, feed_forward_proj="gated-gelu",
            layer_norm_epsilon=1e-6, dropout_rate=0.0)
# google/t5-v1_1-xxl (FLUX.1's text_encoder_2/config.json).
REAL = dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
            relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
            layer_norm_epsilon=1e-6, dropout_rate=0.0)
REAL_PARAMETERS = 4_762_310_656
TOKENS = 24


def init_rule(gen):
    def rule(name, p):
        if name == "shared.weight":
            return torch.randn(p.shape, generator=gen)
        if name.endswith("relative_attention_bias.weight"):
            return torch.randn(p.shape, generator=gen)
        if name.endswith("layer_norm.weight"):
            return 1.0 + torch.randn(p.shape, generator=gen) * 0.1
        if p.ndim == 2:
            return cc.fan_in_normal(p, gen)
        return None
    return rule


def buckets(lo, hi, nb, md):
    return T5Attention._relative_position_bucket(torch.arange(lo, hi + 1), bidirectional=True, num_buckets=nb,
                                                 max_distance=md)


def check_bucket_coverage(table):
    """Every bucket but the one only rel == 0 could reach from the positive side must occur."""
    nb, md = TINY["relative_attention_num_buckets"], TINY["relative_attention_max_distance"]
    half = nb // 2
    exact = half // 2
    used = set(table.tolist())
    want = set(range(nb)) - {half}
    if used != want:
        raise RuntimeError(f"buckets used {sorted(used)}, want {sorted(want)}")
    if TOKENS - 1 < md or TOKENS <= 2 * exact:
        raise RuntimeError("the sequence does not reach the clamped distances")


def saved_tensors(model):
    """What save_pretrained writes (tied weights stored once), as name -> tensor."""
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        with safe_open(os.path.join(d, "model.safetensors"), framework="pt") as f:
            return {k: f.get_tensor(k).contiguous() for k in f.keys()}


def main():
    gc.deterministic_torch()
    out_dir = gc.out_dir()
    gen = torch.Generator().manual_seed(SEED)
    config = T5Config(**TINY)
    if config.dense_act_fn != "gelu_new" or not config.is_gated_act:
        raise RuntimeError(f"gated-gelu parsed as {config.dense_act_fn}, gated {config.is_gated_act}")
    model = T5EncoderModel(config).eval()
    cc.init_params(model.named_parameters(), gen, init_rule(gen))
    ids = torch.randint(2, TINY["vocab_size"], (2, TOKENS), generator=gen, dtype=torch.int64)
    ids[0, -1] = 1  # </s>
    ids[1, 17] = 1
    ids[1, 18:] = 0  # padding

    with torch.no_grad():
        out32 = model(input_ids=ids).last_hidden_state
        out64 = model.double()(input_ids=ids).last_hidden_state
    model.float()
    err = cc.fp64_cross_check([out32], [out64])
    worst = cc.check_every_weight_matters(model, lambda m: m.named_parameters(),
                                          lambda m: [m(input_ids=ids).last_hidden_state], SEED + 1000)
    tiny_table = buckets(-(TOKENS - 1), TOKENS - 1, TINY["relative_attention_num_buckets"],
                         TINY["relative_attention_max_distance"])
    check_bucket_coverage(tiny_table)
    xxl_table = buckets(-1023, 1023, REAL["relative_attention_num_buckets"], REAL["relative_attention_max_distance"])
    real = cc.meta_parameter_count(lambda: T5EncoderModel(T5Config(**REAL)))
    if real != REAL_PARAMETERS:
        raise RuntimeError(f"T5EncoderModel with t5-v1_1-xxl's config has {real} parameters, not {REAL_PARAMETERS}")

    sd = saved_tensors(model)
    if "shared.weight" not in sd or any(v.dtype != torch.float32 for v in sd.values()):
        raise RuntimeError(f"unexpected saved tensors: {sorted(sd)}")
    meta = {"config": json.dumps({k: v for k, v in config.to_dict().items() if not k.startswith("_")},
                                 sort_keys=True, default=str),
            "seed": str(SEED), "torch_version": torch.__version__, "transformers_version": transformers.__version__}
    weights = os.path.join(out_dir, "t5_tiny_weights.safetensors")
    gc.write_safetensors(weights, sd, meta)
    io = {"input_ids": ids.to(torch.int32), "last_hidden_state": out32.contiguous(),
          "buckets_tiny": tiny_table.to(torch.int64), "buckets_xxl": xxl_table.to(torch.int64)}
    io_path = os.path.join(out_dir, "t5_tiny_io.safetensors")
    gc.write_safetensors(io_path, io, dict(meta, rel_l2_fp32_vs_fp64=repr(err), real_parameters=str(real)))
    print(f"t5 tiny: {len(sd)} tensors; fp32 vs fp64 relative L2 {err:.3e}; least-influential parameter "
          f"{worst[0]} (|grad|*|w| = {worst[1]:.2e}); buckets used {sorted(set(tiny_table.tolist()))}")
    print(f"t5: T5EncoderModel with t5-v1_1-xxl's config (meta device): {real:,} parameters")
    rows = [(os.path.relpath(p, gc.repo_root()), os.path.getsize(p), gc.sha256_file(p)[:16]) for p in (weights, io_path)]
    gc.print_table("\nt5.py fixtures", ["file", "bytes", "sha256[:16]"], rows)


if __name__ == "__main__":
    main()
