"""Golden fixtures for the whole text-to-image pipeline (runtime/pipeline/): a tiny diffusers FluxPipeline with
seeded random weights, saved as a diffusers directory, run on the CPU in float32 from a prompt.

Writes, under tests/data/golden/:

  pipeline_tiny/                   a FLUX diffusers directory, as FluxPipeline.save_pretrained writes it
                                   (model_index.json, scheduler/, text_encoder/, text_encoder_2/, transformer/, vae/),
                                   with tokenizer/ and tokenizer_2/ written here in the layout of FLUX.1's own
                                   (CLIP: vocab.json + merges.txt + configs; T5: spiece.model + configs) from the
                                   synthetic tokenizers under tests/data/tokenizers (1,200 and 800 ids). `qdc compile`
                                   turns the directory into a plan; tests/test_golden_pipeline.c runs that plan.
  pipeline_tiny_io.safetensors     one generation, FluxPipeline(prompt, 64 x 48, 4 steps, guidance 3.5,
                                   generator=torch.Generator("cpu").manual_seed(NOISE_SEED)), and the same prompt
                                   with num_images_per_prompt=2 (suffix _b2):
                                     clip_ids I32 [1, 16], t5_ids I32 [1, 16]   what the tokenizers gave
                                     prompt_embeds F32 [1, 16, 32]              T5's last_hidden_state
                                     pooled_prompt_embeds F32 [1, 32]           CLIP's pooler_output
                                     noise F32 [1, 12, 64]                      the packed initial latents
                                     timestep F32 [4], guidance F32 [4]         what the transformer got per step
                                     sigmas F32 [5]                             the scheduler's, with the final 0
                                     latents_0 .. latents_3 F32 [1, 12, 64]     after each Euler step
                                     image F32 [1, 3, 48, 64]                   vae.decode's output
                                     image_u8 U8 [1, 48, 64, 3]                 the PIL image's pixels
                                     noise_b2, latents_3_b2, image_u8_b2        the batch of 2
                                   __metadata__: prompt, seed, steps, guidance, width, height, versions.
  pipeline_noise.safetensors       torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed)) for
                                   sizes 16 ..  4,099 (the vectorized path and its tail), seeds up to 2^64 - 1;
                                   case list in __metadata__ "cases"; for four FLUX-sized shapes (up to
                                   [1, 16, 128, 128]) only the FNV-1a 64 hash of the float32 bytes, in "hashes".
  pipeline_schedule.safetensors    FlowMatchEulerDiscreteScheduler.set_timesteps as FluxPipeline calls it (sigmas
                                   linspace(1, 1/n, n), mu from the image token count), for FLUX.1-dev's and
                                   FLUX.1-schnell's scheduler configs and others: <case>.sigmas (n + 1),
                                   <case>.timesteps (n), <case>.model_t (timesteps / 1000 as the transformer gets
                                   them); cases and configs in __metadata__ "cases".

Usage: .venv-golden/bin/python tools/golden/pipeline.py  (tools/golden/regenerate.sh runs it).
"""

import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import component_common as cc  # noqa: E402
import golden_common as gc  # noqa: E402
import clip as clip_gen  # noqa: E402
import flux_transformer as flux_gen  # noqa: E402
import t5 as t5_gen  # noqa: E402
import vae as vae_gen  # noqa: E402

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel  # noqa: E402
from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer  # noqa: E402

SEED = 21
NOISE_SEED = 1234
# Characters the tiny vocabularies lack come first, so both tokenizers take their unknown paths inside the
# 16 tokens; the rest is cut by truncation, as FluxPipeline cuts long prompts.
PROMPT = "日本 ☃ café: a tiny red fox in fresh snow at dusk, highly detailed, cinematic lighting"
WIDTH, HEIGHT = 64, 48
STEPS = 4
GUIDANCE = 3.5
TXT_TOKENS = 16   # max_sequence_length for T5, and CLIP's model_max_length
DIR_NAME = "pipeline_tiny"

# The scheduler configs of the FLUX.1 repositories (scheduler/scheduler_config.json of black-forest-labs/FLUX.1-dev
# and FLUX.1-schnell, minus _class_name/_diffusers_version).
DEV_SCHEDULER = dict(base_image_seq_len=256, base_shift=0.5, max_image_seq_len=4096, max_shift=1.15,
                     num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True)
SCHNELL_SCHEDULER = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)

CLIP = dict(vocab_size=1200, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=TXT_TOKENS, hidden_act="quick_gelu", layer_norm_eps=1e-5, bos_token_id=0,
            eos_token_id=1, pad_token_id=1, projection_dim=32)
T5 = dict(vocab_size=800, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, relative_attention_num_buckets=16,
          relative_attention_max_distance=16, feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6,
          dropout_rate=0.0)
TRANSFORMER = dict(patch_size=1, in_channels=64, num_layers=2, num_single_layers=2, attention_head_dim=8,
                   num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
                   axes_dims_rope=(2, 2, 4))
VAE = dict(vae_gen.COMMON, block_out_channels=[4, 8, 8, 8], latent_channels=16, norm_num_groups=4, sample_size=64)


# --- tokenizers -------------------------------------------------------------------------------------------------

def write_clip_tokenizer(dst):
    """FLUX.1's tokenizer/ layout (vocab.json, merges.txt, configs) with the synthetic CLIP BPE's vocabulary."""
    src = json.load(open(os.path.join(gc.repo_root(), "tests", "data", "tokenizers", "clip_synth", "tokenizer.json"),
                         encoding="utf-8"))
    model = src["model"]
    os.makedirs(dst)
    with open(os.path.join(dst, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(model["vocab"], f, ensure_ascii=False)
    with open(os.path.join(dst, "merges.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("#version: 0.2\n")
        for m in model["merges"]:
            f.write((m if isinstance(m, str) else " ".join(m)) + "\n")
    special = {"content": "", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
    config = {
        "add_prefix_space": False,
        "added_tokens_decoder": {
            "0": dict(special, content="<|startoftext|>", normalized=True, special=True),
            "1": dict(special, content="<|endoftext|>", special=True),
        },
        "bos_token": "<|startoftext|>", "clean_up_tokenization_spaces": True, "do_lower_case": True,
        "eos_token": "<|endoftext|>", "errors": "replace", "model_max_length": TXT_TOKENS,
        "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer", "unk_token": "<|endoftext|>",
    }
    with open(os.path.join(dst, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    shutil.copy(os.path.join(gc.repo_root(), "tests", "data", "tokenizers", "flux", "tokenizer", "special_tokens_map.json"),
                os.path.join(dst, "special_tokens_map.json"))


def write_t5_tokenizer(dst):
    """FLUX.1's tokenizer_2/ layout minus tokenizer.json: the synthetic SentencePiece model and configs."""
    os.makedirs(dst)
    shutil.copy(os.path.join(gc.repo_root(), "tests", "data", "tokenizers", "t5_synth", "spiece.model"),
                os.path.join(dst, "spiece.model"))
    config = {"clean_up_tokenization_spaces": True, "eos_token": "</s>", "extra_ids": 100, "legacy": True,
              "model_max_length": 512, "pad_token": "<pad>", "tokenizer_class": "T5Tokenizer", "unk_token": "<unk>"}
    with open(os.path.join(dst, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    with open(os.path.join(dst, "special_tokens_map.json"), "w") as f:
        json.dump({"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}, f, indent=2, sort_keys=True)


# --- models -----------------------------------------------------------------------------------------------------

def build_models():
    gen = torch.Generator().manual_seed(SEED)
    text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP)).eval()
    cc.init_params(text_encoder.named_parameters(), gen, clip_gen.init_rule(gen))
    text_encoder_2 = T5EncoderModel(T5Config(**T5)).eval()
    cc.init_params(text_encoder_2.named_parameters(), gen, t5_gen.init_rule(gen))
    transformer = FluxTransformer2DModel(**TRANSFORMER).eval()
    flux_gen.init_weights(transformer, gen)
    vae = AutoencoderKL(**VAE).eval()
    cc.init_params(vae.named_parameters(), gen, vae_gen.init_rule(gen))
    return text_encoder, text_encoder_2, transformer, vae


def save_directory(out):
    """Saves the pipeline through diffusers, then puts FLUX-style tokenizer folders in place of the ones
    save_pretrained wrote (a tokenizer.json each), and drops anything that names this machine."""
    text_encoder, text_encoder_2, transformer, vae = build_models()
    tmp = tempfile.mkdtemp()
    try:
        write_clip_tokenizer(os.path.join(tmp, "tok", "tokenizer"))
        write_t5_tokenizer(os.path.join(tmp, "tok", "tokenizer_2"))
        pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**DEV_SCHEDULER), vae=vae,
                            text_encoder=text_encoder,
                            tokenizer=CLIPTokenizer.from_pretrained(os.path.join(tmp, "tok", "tokenizer")),
                            text_encoder_2=text_encoder_2,
                            tokenizer_2=T5Tokenizer.from_pretrained(os.path.join(tmp, "tok", "tokenizer_2")),
                            transformer=transformer)
        staged = os.path.join(tmp, "pipe")
        pipe.save_pretrained(staged, safe_serialization=True)
        for name in ("tokenizer", "tokenizer_2"):
            shutil.rmtree(os.path.join(staged, name))
            shutil.copytree(os.path.join(tmp, "tok", name), os.path.join(staged, name))
        for root, _, files in os.walk(staged):
            for f in files:
                if f.endswith(".json"):
                    text = open(os.path.join(root, f), encoding="utf-8").read()
                    if tmp in text:
                        raise RuntimeError(f"{f} records the temporary path {tmp}")
        if os.path.exists(out):
            shutil.rmtree(out)
        shutil.copytree(staged, out)
    finally:
        shutil.rmtree(tmp)


# --- one generation ---------------------------------------------------------------------------------------------

def generate(pipe, batch):
    """Runs FluxPipeline.__call__ unchanged and records what flows between its parts: the transformer's inputs
    (a forward pre-hook), the latents after each step (callback_on_step_end), the VAE decoder's output."""
    seen = {"noise": None, "timestep": [], "guidance": [], "latents": [], "image": None}

    def pre_hook(_module, _args, kwargs):
        if seen["noise"] is None:
            seen["noise"] = kwargs["hidden_states"].detach().clone()
            seen["img_ids"] = kwargs["img_ids"].detach().clone()
            seen["txt_ids"] = kwargs["txt_ids"].detach().clone()
        seen["timestep"].append(kwargs["timestep"].detach().clone())
        seen["guidance"].append(kwargs["guidance"].detach().clone())

    def on_step(_pipe, _i, _t, kw):
        seen["latents"].append(kw["latents"].detach().clone())
        return {}

    def decoder_hook(_module, _args, output):
        seen["image"] = output.detach().clone()

    h1 = pipe.transformer.register_forward_pre_hook(pre_hook, with_kwargs=True)
    h2 = pipe.vae.decoder.register_forward_hook(decoder_hook)
    try:
        with torch.no_grad():
            out = pipe(PROMPT, width=WIDTH, height=HEIGHT, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
                       max_sequence_length=TXT_TOKENS, num_images_per_prompt=batch,
                       generator=torch.Generator("cpu").manual_seed(NOISE_SEED), output_type="pil",
                       callback_on_step_end=on_step)
    finally:
        h1.remove()
        h2.remove()
    seen["sigmas"] = pipe.scheduler.sigmas.detach().clone()
    seen["pixels"] = torch.from_numpy(np.stack([np.asarray(im) for im in out.images]))
    return seen


def tokens_and_embeddings(pipe):
    """The ids exactly as FluxPipeline's _get_clip_prompt_embeds / _get_t5_prompt_embeds tokenize, and the
    embeddings encode_prompt returns."""
    clip_ids = pipe.tokenizer(PROMPT, padding="max_length", max_length=pipe.tokenizer_max_length, truncation=True,
                              return_tensors="pt").input_ids
    t5_ids = pipe.tokenizer_2(PROMPT, padding="max_length", max_length=TXT_TOKENS, truncation=True,
                              return_tensors="pt").input_ids
    with torch.no_grad():
        prompt_embeds, pooled, text_ids = pipe.encode_prompt(PROMPT, prompt_2=None, max_sequence_length=TXT_TOKENS)
    return clip_ids, t5_ids, prompt_embeds, pooled, text_ids


def check_run(run, pipe, prompt_embeds):
    """Sanity: what the pre-hook saw is what the pipeline is documented to pass."""
    n = run["noise"].shape[1]
    if not torch.equal(run["txt_ids"], torch.zeros(TXT_TOKENS, 3)):
        raise RuntimeError("txt_ids are not zeros")
    grid_w = WIDTH // 16
    want_ids = torch.tensor([[0.0, i // grid_w, i % grid_w] for i in range(n)])
    if not torch.equal(run["img_ids"], want_ids):
        raise RuntimeError("img_ids are not (0, row, col)")
    for g in run["guidance"]:
        if not torch.equal(g, torch.full_like(g, GUIDANCE)):
            raise RuntimeError("guidance is not the scale")
    # timestep / 1000 as FluxPipeline divides it, from the scheduler's timesteps
    want_t = pipe.scheduler.timesteps
    for i, t in enumerate(run["timestep"]):
        if not torch.equal(t, (want_t[i].expand(t.shape[0]).to(torch.float32)) / 1000):
            raise RuntimeError(f"step {i}: the transformer's timestep is not timesteps[i] / 1000")
    if prompt_embeds.abs().max() == 0:
        raise RuntimeError("empty prompt embeddings")


def pipeline_fixture(out_dir, directory):
    pipe = FluxPipeline.from_pretrained(directory, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    clip_ids, t5_ids, prompt_embeds, pooled, _ = tokens_and_embeddings(pipe)
    if int((clip_ids == 1).nonzero()[0, 1]) < 3:
        raise RuntimeError("the CLIP ids end too early; the prompt should fill the 16 tokens")
    run = generate(pipe, 1)
    check_run(run, pipe, prompt_embeds)
    run2 = generate(pipe, 2)
    # One draw of [2, 16, h, w]: its first image's noise is the single image's (the 16-value blocks line up).
    if not torch.equal(run2["noise"][:1], run["noise"]) or torch.equal(run2["noise"][0], run2["noise"][1]):
        raise RuntimeError("the batch's noise is not one draw of the whole shape")
    io = {
        "clip_ids": clip_ids.to(torch.int32), "t5_ids": t5_ids.to(torch.int32),
        "prompt_embeds": prompt_embeds.contiguous(), "pooled_prompt_embeds": pooled.contiguous(),
        "noise": run["noise"].contiguous(), "img_ids": run["img_ids"].contiguous(),
        "timestep": torch.cat(run["timestep"]).contiguous(), "guidance": torch.cat(run["guidance"]).contiguous(),
        "sigmas": run["sigmas"].to(torch.float32).contiguous(), "image": run["image"].contiguous(),
        "image_u8": run["pixels"].to(torch.uint8).contiguous(),
        "noise_b2": run2["noise"].contiguous(), "latents_3_b2": run2["latents"][-1].contiguous(),
        "image_u8_b2": run2["pixels"].to(torch.uint8).contiguous(),
    }
    for i, lat in enumerate(run["latents"]):
        io[f"latents_{i}"] = lat.contiguous()
    meta = {"prompt": PROMPT, "seed": str(NOISE_SEED), "steps": str(STEPS), "guidance": repr(GUIDANCE),
            "width": str(WIDTH), "height": str(HEIGHT), "max_sequence_length": str(TXT_TOKENS),
            "torch_version": torch.__version__, "diffusers_version": diffusers.__version__,
            "transformers_version": transformers.__version__, "weights_seed": str(SEED)}
    path = os.path.join(out_dir, "pipeline_tiny_io.safetensors")
    gc.write_safetensors(path, io, meta)
    print(f"pipeline tiny: clip ids {clip_ids.tolist()[0]}\n               t5 ids {t5_ids.tolist()[0]}")
    print(f"               {STEPS} steps, sigmas {[round(float(s), 6) for s in run['sigmas']]}; image "
          f"{tuple(run['pixels'].shape)} mean {float(run['pixels'].float().mean()):.1f}")
    return [path]


# --- noise and schedules ----------------------------------------------------------------------------------------

NOISE_CASES = [(0, [16]), (1, [17]), (2, [31]), (3, [100]), (42, [1, 16, 6, 8]), (2**32 + 5, [64]),
               (2**64 - 1, [1000]), (1234, [2, 16, 6, 8]), (987654321, [4099])]
NOISE_HASHED = [(0, [1, 16, 128, 128]), (42, [1, 16, 64, 64]), (7, [2, 16, 96, 128]), (2**63 + 11, [4, 16, 32, 32])]


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def noise_fixture(out_dir):
    tensors, cases, hashes = {}, [], []
    for i, (seed, shape) in enumerate(NOISE_CASES):
        x = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
        tensors[f"case{i}"] = x.reshape(-1).contiguous()
        cases.append({"name": f"case{i}", "seed": str(seed), "shape": shape})
    for seed, shape in NOISE_HASHED:
        x = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32)
        hashes.append({"seed": str(seed), "shape": shape, "fnv1a64": f"{fnv1a64(x.numpy().tobytes()):016x}"})
    if fnv1a64(b"") != 0xcbf29ce484222325 or fnv1a64(b"a") != 0xaf63dc4c8601ec8c:
        raise RuntimeError("FNV-1a 64 does not give the published test vectors")
    meta = {"cases": json.dumps(cases), "hashes": json.dumps(hashes), "torch_version": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    path = os.path.join(out_dir, "pipeline_noise.safetensors")
    gc.write_safetensors(path, tensors, meta)
    print(f"pipeline noise: {len(cases)} cases, {len(hashes)} hashed shapes (torch CPU capability "
          f"{meta['cpu_capability']})")
    return [path]


SCHEDULE_CASES = [
    ("dev_28_4096", DEV_SCHEDULER, 28, 4096), ("dev_28_1024", DEV_SCHEDULER, 28, 1024),
    ("dev_4_12", DEV_SCHEDULER, 4, 12), ("dev_1_256", DEV_SCHEDULER, 1, 256), ("dev_50_4608", DEV_SCHEDULER, 50, 4608),
    ("dev_7_2000", DEV_SCHEDULER, 7, 2000),
    ("schnell_4_4096", SCHNELL_SCHEDULER, 4, 4096), ("schnell_1_4096", SCHNELL_SCHEDULER, 1, 4096),
    ("shift3_10_64", dict(SCHNELL_SCHEDULER, shift=3.0), 10, 64),
    ("terminal_8_1024", dict(DEV_SCHEDULER, shift_terminal=0.1), 8, 1024),
    ("linear_6_512", dict(DEV_SCHEDULER, time_shift_type="linear"), 6, 512),
    ("custom_5_300", dict(base_image_seq_len=128, base_shift=0.3, max_image_seq_len=2048, max_shift=1.5,
                          num_train_timesteps=1000, use_dynamic_shifting=True), 5, 300),
]


def schedule_fixture(out_dir):
    tensors, cases = {}, []
    for name, config, steps, seq_len in SCHEDULE_CASES:
        sched = FlowMatchEulerDiscreteScheduler(**config)
        # FluxPipeline.__call__, step 5, verbatim but for the image token count
        sigmas = np.linspace(1.0, 1 / steps, steps)
        mu = calculate_shift(seq_len, sched.config.get("base_image_seq_len", 256),
                             sched.config.get("max_image_seq_len", 4096), sched.config.get("base_shift", 0.5),
                             sched.config.get("max_shift", 1.15))
        timesteps, _ = retrieve_timesteps(sched, steps, "cpu", sigmas=sigmas, mu=mu)
        tensors[f"{name}.sigmas"] = sched.sigmas.to(torch.float32).contiguous()
        tensors[f"{name}.timesteps"] = timesteps.to(torch.float32).contiguous()
        tensors[f"{name}.model_t"] = (timesteps.to(torch.float32) / 1000).contiguous()
        full = dict(config, _class_name="FlowMatchEulerDiscreteScheduler")
        cases.append({"name": name, "config": full, "steps": steps, "image_seq_len": seq_len})
    meta = {"cases": json.dumps(cases, sort_keys=True), "diffusers_version": diffusers.__version__,
            "numpy_version": np.__version__}
    path = os.path.join(out_dir, "pipeline_schedule.safetensors")
    gc.write_safetensors(path, tensors, meta)
    print(f"pipeline schedule: {len(cases)} cases")
    return [path]


def main():
    gc.deterministic_torch()
    out_dir = gc.out_dir()
    directory = os.path.join(out_dir, DIR_NAME)
    save_directory(directory)
    paths = pipeline_fixture(out_dir, directory)
    paths += noise_fixture(out_dir)
    paths += schedule_fixture(out_dir)
    for root, _, files in sorted(os.walk(directory)):
        paths += [os.path.join(root, f) for f in sorted(files)]
    rows = [(os.path.relpath(p, gc.repo_root()), os.path.getsize(p), gc.sha256_file(p)[:16]) for p in paths]
    gc.print_table("\npipeline.py fixtures", ["file", "bytes", "sha256[:16]"], rows)


if __name__ == "__main__":
    main()
