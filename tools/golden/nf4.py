"""Golden fixtures for bitsandbytes NF4 quantization, computed on the CPU with the pinned bitsandbytes.

Writes, under tests/data/golden/:

nf4_cases.safetensors
  One group of tensors per case (CASES below); for a case named C:
    C.input             F32 or BF16, the case's shape           what was quantized
    C.packed            U8 [ceil(n/2), 1]                        two 4-bit codes a byte, first element in the HIGH nibble;
                                                                 the shape bitsandbytes returns and stores as `weight`
    C.quant_map         F32 [16]                                 the NF4 code book (value of each 4-bit code)
    C.dequant           input's dtype, input's shape             bitsandbytes' dequantize_4bit of the above
  without double quantization:
    C.absmax            F32 [ceil(n/blocksize)]                  per-block absolute maximum
  with double quantization (compress_statistics=True):
    C.absmax            U8  [ceil(n/blocksize)]                  8-bit codes of (absmax - offset), blocks of 256
    C.nested_absmax     F32 [ceil(n/blocksize/256)]              absmax of each 256-block of (absmax - offset)
    C.nested_quant_map  F32 [256]                                the signed 8-bit dynamic map (create_dynamic_map())
    C.offset            F32 [1]                                  mean of the float absmax values
    C.absmax_dequant    F32 [ceil(n/blocksize)]                  the per-block scale dequantize_4bit actually used:
                                                                 nested_quant_map[absmax] * nested_absmax[i/256] + offset
  __metadata__: "cases" (JSON list: name, dtype, shape, n, blocksize, blocks, double_quant, offset and offset_hex
  (decimal and C99 hex strings of the float32 offset, both exact), nested_blocks, cpu_native_dequant_wrong,
  cuda_* (see below)), "nf4_thresholds" (JSON: the 15 decision thresholds as
  C99 hex floats, "cpu" and "cuda"), "bitsandbytes_version", "torch_version", "seed".

nf4_bnb_linear.safetensors
  A real bitsandbytes checkpoint: the state dict of a tiny model with two bnb.nn.Linear4bit layers (nf4, compute
  dtype bf16, blocksize 64, storage uint8), saved with safetensors.torch.save_file(state_dict, path,
  metadata={"format": "pt"}) as diffusers' and transformers' save_pretrained do for a bitsandbytes-quantized model.
  Keys, for L in proj_in (compress_statistics=True, weight [128, 192]) and proj_out (compress_statistics=False,
  weight [48, 128]):
    L.weight                              U8  [out*in/2, 1]   packed NF4 codes as in C.packed
    L.weight.absmax                       U8 [blocks] (proj_in, double-quantized) / F32 [blocks] (proj_out)
    L.weight.quant_map                    F32 [16]            the NF4 code book
    L.weight.nested_absmax                F32 [ceil(blocks/256)]           proj_in only
    L.weight.nested_quant_map             F32 [256]                        proj_in only
    L.weight.quant_state.bitsandbytes__nf4  U8 [len]          UTF-8 bytes of json.dumps() (default separators
                                          ", " and ": ", no trailing NUL) of the non-tensor quant state:
                                          {"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16",
                                           "shape": [out, in], and for double quantization "nested_blocksize": 256,
                                           "nested_dtype": "float32", "nested_offset": <offset as a Python float>}
                                          (the offset's repr() is the shortest decimal that reads back to the
                                          float32 value exactly)
    L.bias                                BF16 [out]          not quantized
  The packed weight is the row-major [out, in] matrix flattened, quantized in blocks of 64 consecutive elements.

nf4_bnb_linear_source.safetensors
  The unquantized model and one forward pass:
    proj_in.weight BF16 [128, 192], proj_in.bias BF16 [128], proj_out.weight BF16 [48, 128], proj_out.bias BF16 [48]
    input             BF16 [4, 192]   seeded
    proj_in.output    BF16 [4, 128]   bitsandbytes' Linear4bit forward on the CPU
    output            BF16 [4, 48]    proj_out(silu(proj_in(input))), bitsandbytes' forward on the CPU
    reference_output  F32  [4, 48]    the same computed in float32 from the dequantized weights (bf16 input and bias
                                      widened to float32, float32 silu, no bf16 rounding in between)
  bitsandbytes' CPU forward takes a fused bf16 kernel on CPUs with AVX512-BF16 and dequantize + bf16 matmul
  elsewhere, so `output` can differ in the last bf16 bits between machines; compare with a bf16 tolerance, or against
  reference_output.

What was confirmed by reading bitsandbytes 0.50.2 (python sources as installed; csrc/ at tag 0.50.1, whose python
sources are identical to 0.50.2's) and by re-deriving every stored code in this script:

* CPU quantize_4bit has no native kernel: it is the pure-torch `default` backend op
  (backends/default/ops.py). Per block of `blocksize` consecutive elements of the flattened input (as float32):
  absmax = max |x|; scaled = clamp(x * (1 / max(absmax, 1e-38)), -1, 1); code = number of the 15 midpoints between
  consecutive code book entries that are strictly below `scaled` (torch.bucketize, right=False). A value exactly on
  a midpoint (computed in float32 as (c[i] + c[i+1]) / 2) takes the LOWER code. The CUDA kernel's decision tree
  (kernels.cu dQuantizeNF4, `if (x > t)`) has the same rule, but its thresholds are decimal literals, and 4 of its 15
  (boundaries 0|1, 8|9, 12|13, 14|15) round to the float32 next to the CPU's midpoint: a scaled value equal to one of
  those 4 float32 values gets a code one apart (see CUDA_NF4_THRESHOLD_LITERALS; case f32_ties_b64 hits all 4).
* Nibble order: byte i holds element 2i in bits 7..4 and element 2i+1 in bits 3..0 (CPU and CUDA). An odd element
  count pads the last low nibble with the code of 0.0 (7 = 0b0111).
* The last partial block is its own block with its own absmax over the elements that exist. On the CPU it is
  scaled by a true division x / absmax (full blocks multiply by the float32 reciprocal), which can differ by one ulp.
* absmax is float32 and, for full blocks, the exact max |x|. For an all-zero FULL block the CPU stores absmax 0 and
  codes 7 (value 0.0); for an all-zero LAST PARTIAL block it stores the clamp value 1e-38 (a float32 subnormal,
  0x006ce3ee) with codes 7.
* Dequantization (CPU and CUDA): value = code_book[code] * absmax in float32, then rounded to the output dtype
  (round to nearest even for bf16).
* bitsandbytes 0.50.2's native CPU dequantize_4bit (csrc/cpu_ops.cpp, AVX-512 path, taken on CPUs with AVX-512 when
  the last dimension is a multiple of 16 and blocksize < 2048) looks up absmax[row * (cols / blocksize) + col /
  blocksize]; that is wrong whenever cols is not a multiple of blocksize (e.g. [6, 96] with blocksize 64), where it
  returns wrong values (the ARM path guards against it, the AVX-512 one does not). Case f32_6x96_b64 has such a
  shape; its C.dequant is the correct value, from bitsandbytes' pure-torch default backend (which is what it uses for
  odd widths and what CUDA computes), and its metadata says cpu_native_dequant_wrong: true. The same kernel returns
  shape [1, n] for a 1-D input; C.dequant has the input's shape.
* Double quantization (compress_statistics=True): offset = mean(absmax) (float32 torch mean); the float32 values
  (absmax - offset) are quantized with quantize_blockwise(blocksize=256) to 8-bit codes of the signed dynamic map
  (create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): 256 sorted values in [-1, 1], including 0 and
  1.0) with a float32 nested_absmax per 256 block. Dequantization of block i's scale:
  absmax[i] = float32(float32(map[q[i]] * nested_absmax[i / 256]) + offset), i.e. multiply and round, then add the
  offset and round (no fused multiply-add); then as above.
* The CPU 8-bit quantizer (libbitsandbytes_cpu, csrc/cpu_ops.cpp quantize_cpu_impl) is NOT an exact nearest-code
  search: it maps x * (1 / nested_absmax) to one of 65536 evenly spaced points in [-1, 1]
  (index = trunc((v + 1) * 0.5 * 65535 + 0.5)) and returns the code nearest to that point from a precomputed table.
  All-zero 256-blocks get absmax 0 and code 0.
What the CUDA kernels (kQuantizeBlockwise, built with --use_fast_math) do differently, emulated below and counted
per case as cuda_packed_mismatches / cuda_absmax_mismatches / cuda_absmax_q_mismatches in the metadata:
* An all-zero block: CUDA computes 1/0 = inf, 0 * inf = NaN, and NaN compares false everywhere, so its codes are 0
  (value -1.0, dequantized -1.0 * 0 = -0.0) where the CPU's are 7 (0.0); a zero last partial block keeps absmax 0.
* The 4 thresholds above; and CUDA always multiplies by the reciprocal (approximate under --use_fast_math), so a
  value within an ulp of a threshold can land on the other side.
* The nested 8-bit codes come from an exact binary search with midpoint rounding (dQuantize), not the 65536-point
  table, so small (absmax - offset) values can get different 8-bit codes.
* The offset (a torch mean) can differ in its last bit between CPU and CUDA (summation order).
All of this was checked on an NVIDIA H200 with tools/golden/nf4_cuda_check.py (bitsandbytes 0.50.2, torch
2.11+cu130): every predicted difference, and no other, showed up, and CUDA dequantizes every case's stored codes to
C.dequant bit for bit.
"""

import json
import math
from fractions import Fraction
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_common as gc  # noqa: E402

import bitsandbytes as bnb  # noqa: E402
import bitsandbytes.functional as F  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

SEED = 4
NF4 = np.array(F.get_4bit_type("nf4", device="cpu").numpy(), dtype=np.float32)
NESTED_BLOCKSIZE = 256

# name -> (dtype, shape, blocksize, double_quant, input recipe)
CASES = [
    ("f32_n64_b64", torch.float32, (64,), 64, False, "plain"),
    ("f32_ties_b64", torch.float32, (128,), 64, False, "ties"),
    ("f32_n4096_b64", torch.float32, (4096,), 64, False, "mixed"),
    ("f32_n4096_b64_dq", torch.float32, (4096,), 64, True, "mixed"),
    ("f32_n1000_b64", torch.float32, (1000,), 64, False, "mixed"),
    ("f32_n1000_b64_dq", torch.float32, (1000,), 64, True, "mixed"),
    ("f32_n1000_b128_zerotail", torch.float32, (1000,), 128, False, "zerotail"),
    ("f32_n127_b64", torch.float32, (127,), 64, False, "mixed"),
    ("f32_3x4097_b64", torch.float32, (3, 4097), 64, False, "mixed"),
    ("f32_3x4097_b64_dq", torch.float32, (3, 4097), 64, True, "mixed"),
    ("f32_3x4097_b128_dq", torch.float32, (3, 4097), 128, True, "mixed"),
    ("f32_3x4097_b4096", torch.float32, (3, 4097), 4096, False, "mixed"),
    ("f32_n4096_b4096_dq", torch.float32, (4096,), 4096, True, "mixed"),
    ("f32_160x128_b64_dq", torch.float32, (160, 128), 64, True, "mixed"),
    ("f32_6x96_b64", torch.float32, (6, 96), 64, False, "mixed"),
    ("bf16_n4096_b64", torch.bfloat16, (4096,), 64, False, "mixed"),
    ("bf16_n1000_b64_dq", torch.bfloat16, (1000,), 64, True, "mixed"),
    ("bf16_3x4097_b64_dq", torch.bfloat16, (3, 4097), 64, True, "mixed"),
    ("bf16_160x128_b128_dq", torch.bfloat16, (160, 128), 128, True, "mixed"),
    ("bf16_n1000_b4096", torch.bfloat16, (1000,), 4096, False, "mixed"),
]


# ---------------------------------------------------------------------------------------------------------------
# inputs


def make_input(recipe, shape, blocksize, dtype, gen):
    n = math.prod(shape)
    if recipe == "plain":
        x = torch.randn(n, generator=gen) * 0.7
    elif recipe == "ties":
        # Block 0: absmax exactly 1.0 and every midpoint between code book entries, exactly, so each scaled value
        # is a tie. Block 1: absmax 1.0, the float32 neighbours just below and above each midpoint, +0.0, -0.0 and the
        # code book values themselves.
        mids = ((NF4[:-1] + NF4[1:]) / np.float32(2)).astype(np.float32)
        below = np.nextafter(mids, np.float32(-2)).astype(np.float32)
        above = np.nextafter(mids, np.float32(2)).astype(np.float32)
        rest = np.linspace(-0.99, 0.99, 64 - 2 - 15, dtype=np.float32)
        b0 = np.concatenate([[1.0, -1.0], mids, rest]).astype(np.float32)
        b1 = np.concatenate([[1.0, -1.0], below, above, [0.0, -0.0], NF4[1:15],
                             np.linspace(-0.97, 0.97, 16, dtype=np.float32)]).astype(np.float32)
        assert b0.size == 64 and b1.size == 64
        x = torch.from_numpy(np.concatenate([b0, b1]))
    elif recipe in ("mixed", "zerotail"):
        x = torch.randn(n, generator=gen)
        blocks = -(-n // blocksize)
        # per-block scales spread over three decades so the double-quantized absmax values differ a lot
        scales = torch.exp(torch.empty(blocks).uniform_(math.log(1e-3), math.log(2.0), generator=gen))
        x = x * scales.repeat_interleave(blocksize)[:n]
        # outliers: about one element in 300, 20x to 100x the local scale
        k = max(1, n // 300)
        idx = torch.randperm(n, generator=gen)[:k]
        mult = torch.empty(k).uniform_(20.0, 100.0, generator=gen) * torch.sign(torch.randn(k, generator=gen))
        x[idx] = x[idx].abs().clamp(min=0.1) * mult
        if recipe == "zerotail" or n > 4 * blocksize:
            # an all-zero full block (never the first one)
            zb = min(3, blocks - 2) if blocks >= 3 else None
            if zb is not None and recipe == "mixed":
                x[zb * blocksize:(zb + 1) * blocksize] = 0.0
        if recipe == "zerotail":
            full = (n // blocksize) * blocksize
            assert full < n, "zerotail needs a partial last block"
            x[full:] = 0.0
            x[blocksize:2 * blocksize] = 0.0
    else:
        raise ValueError(recipe)
    return x.reshape(shape).to(dtype).contiguous()


# ---------------------------------------------------------------------------------------------------------------
# independent re-derivations (numpy, float32 arithmetic)

MIDS = ((NF4[:-1] + NF4[1:]) / np.float32(2)).astype(np.float32)

# The thresholds of the CUDA kernel's decision tree (csrc/kernels.cu dQuantizeNF4), as written there: decimal
# float literals, each the exact double-precision midpoint of two code book entries printed to 16-17 digits. Such a
# midpoint lies exactly half-way between two float32 values, so the literal's own rounding decides which one the
# compiler picks; for 4 of the 15 it is the other neighbour than the round-half-even float32 sum the CPU computes.
CUDA_NF4_THRESHOLD_LITERALS = [
    "-0.8480964004993439", "-0.6106329262256622", "-0.4599952697753906", "-0.33967943489551544",
    "-0.23460740596055984", "-0.13791173323988914", "-0.045525018125772476", "0.03979014977812767",
    "0.1202552504837513", "0.2035212516784668", "0.2920137718319893", "0.3893125355243683", "0.5016634166240692",
    "0.6427869200706482", "0.8614784181118011",
]


def decimal_to_f32(text):
    """Correctly rounded decimal -> float32 (what a C/CUDA compiler does with an 'f' literal), without going
    through a double."""
    v = Fraction(text)
    f = np.float32(float(v))
    cands = [np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf))]
    best = min(cands, key=lambda c: (abs(Fraction(float(c)) - v), int(np.array(c).view(np.uint32)) & 1))
    return np.float32(best)


CUDA_MIDS = np.array([decimal_to_f32(t) for t in CUDA_NF4_THRESHOLD_LITERALS], np.float32)


def pack(codes):
    codes = codes.astype(np.uint8)
    if codes.size % 2:
        codes = np.concatenate([codes, np.array([7], np.uint8)])
    return ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8)


def pack_cuda(codes, pad_code):
    codes = codes.astype(np.uint8)
    if codes.size % 2:
        codes = np.concatenate([codes, np.array([pad_code], np.uint8)])
    return ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8)


def ref_quantize_nf4_cpu(x, bs):
    """bitsandbytes' CPU (default backend) quantize_4bit. Returns (packed, absmax)."""
    n = x.size
    full = (n // bs) * bs
    codes, absmax = [], []
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for s in range(0, full, bs):
            blk = x[s:s + bs]
            am = np.max(np.abs(blk))
            inv = np.float32(1) / np.maximum(am, np.float32(1e-38))
            codes.append(np.searchsorted(MIDS, np.clip(blk * inv, -1, 1), side="left"))
            absmax.append(am)
        if full < n:
            blk = x[full:]
            am = np.maximum(np.max(np.abs(blk)), np.float32(1e-38))
            codes.append(np.searchsorted(MIDS, np.clip(blk / am, -1, 1), side="left"))
            absmax.append(am)
    return pack(np.concatenate(codes)), np.array(absmax, np.float32)


def ref_quantize_nf4_cuda(x, bs):
    """The CUDA kernel (kQuantizeBlockwise, NF4), with an exact reciprocal. Returns (packed, absmax)."""
    n = x.size
    codes, absmax = [], []
    pad_code = 7
    with np.errstate(divide="ignore", invalid="ignore"):
        for s in range(0, n, bs):
            blk = x[s:s + bs]
            am = np.max(np.abs(blk)).astype(np.float32)
            inv = np.float32(1) / am
            scaled = blk * inv
            codes.append(np.sum(scaled[:, None] > CUDA_MIDS[None, :], axis=1))  # NaN > t is false: code 0
            absmax.append(am)
            if s + bs >= n:
                pad_code = int(np.sum(np.float32(0) * inv > CUDA_MIDS))
    return pack_cuda(np.concatenate(codes), pad_code), np.array(absmax, np.float32)


def build_cpu_lut(code):
    """csrc/cpu_ops.cpp build_quantize_lut: nearest code for each of 65536 points spread evenly over [-1, 1]."""
    mids = (np.float32(0.5) * (code[:-1] + code[1:])).astype(np.float32)
    i = np.arange(65536)
    val = (np.float32(-1) + (np.float32(2) * i.astype(np.float32)) / np.float32(65535)).astype(np.float32)
    # code_idx advances while midpoints[code_idx] < val: the number of midpoints strictly below val
    return np.searchsorted(mids, val, side="left").astype(np.uint8)


def cpu_lut_index(v, fused):
    v = np.clip(v, np.float32(-1), np.float32(1)).astype(np.float32)
    a = ((v + np.float32(1)) * np.float32(0.5)).astype(np.float32)
    if fused:  # fma(a, 65535, 0.5): one rounding
        t = (a.astype(np.float64) * 65535.0 + 0.5).astype(np.float32)
    else:
        t = ((a * np.float32(65535)).astype(np.float32) + np.float32(0.5)).astype(np.float32)
    return np.trunc(t).astype(np.int64)


def ref_quantize_8bit_cpu(x, code, bs, fused):
    lut = build_cpu_lut(code)
    q, absmax = [], []
    for s in range(0, x.size, bs):
        blk = x[s:s + bs]
        am = np.float32(np.max(np.abs(blk))) if blk.size else np.float32(0)
        absmax.append(am)
        if am == 0:
            q.append(np.zeros(blk.size, np.uint8))
            continue
        inv = np.float32(1) / am
        q.append(lut[cpu_lut_index((blk * inv).astype(np.float32), fused)])
    return np.concatenate(q), np.array(absmax, np.float32)


def cuda_dquantize(code, x):
    """kernels.cu dQuantize<0>: binary search over the 256-entry map, then round to the nearer neighbour."""
    pivot, upper_pivot, lower_pivot = 127, 255, 0
    lower, upper = np.float32(-1), np.float32(1)
    val = code[pivot]
    i = 64
    while i > 0:
        if x > val:
            lower_pivot, lower, pivot = pivot, val, pivot + i
        else:
            upper_pivot, upper, pivot = pivot, val, pivot - i
        val = code[pivot]
        i >>= 1
    if upper_pivot == 255:
        upper = code[upper_pivot]
    if lower_pivot == 0:
        lower = code[lower_pivot]
    if x > val:
        return upper_pivot if x > np.float32((upper + val) * np.float32(0.5)) else pivot
    return lower_pivot if x < np.float32((lower + val) * np.float32(0.5)) else pivot


def ref_quantize_8bit_cuda(x, code, bs):
    q, absmax = [], []
    with np.errstate(divide="ignore", invalid="ignore"):
        for s in range(0, x.size, bs):
            blk = x[s:s + bs]
            am = np.float32(np.max(np.abs(blk)))
            inv = np.float32(1) / am
            absmax.append(am)
            q.extend(cuda_dquantize(code, np.float32(v * inv)) for v in blk)
    return np.array(q, np.uint8), np.array(absmax, np.float32)


def ref_dequantize(packed, absmax, n, bs):
    b = packed.reshape(-1)
    codes = np.empty(b.size * 2, np.uint8)
    codes[0::2] = b >> 4
    codes[1::2] = b & 0xF
    codes = codes[:n]
    scale = np.repeat(absmax, bs)[:n]
    return (NF4[codes] * scale).astype(np.float32)


def to_dtype(a, dtype):
    return torch.from_numpy(np.ascontiguousarray(a)).to(dtype)  # float32 -> bf16 rounds to nearest even


# ---------------------------------------------------------------------------------------------------------------


def f32hex(v):
    return float(np.float32(v)).hex()


def same_bits(a, b):
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == torch.bfloat16:
        return torch.equal(a.view(torch.int16), b.view(torch.int16))
    return torch.equal(a.view(torch.int32), b.view(torch.int32))


def default_backend_dequant(packed, absmax, bs, shape, dtype):
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
    from bitsandbytes.backends.utils import _get_4bit_code

    code = _get_4bit_code("nf4", torch.device("cpu"))
    return _dequantize_4bit_compute(packed.reshape(-1), absmax, code, bs, shape, dtype).reshape(shape)


def run_case(name, dtype, shape, bs, dq, recipe, gen):
    x = make_input(recipe, shape, bs, dtype, gen)
    n = x.numel()
    packed, qs = F.quantize_4bit(x, blocksize=bs, compress_statistics=dq, quant_type="nf4")
    deq = F.dequantize_4bit(packed, qs)
    if len(shape) == 1 and tuple(deq.shape) == (1, n):
        deq = deq.reshape(shape)  # the CPU kernel returns [1, n] for a 1-D input; CUDA returns [n]
    if deq.dtype != dtype or tuple(deq.shape) != tuple(shape):
        raise RuntimeError(f"{name}: dequantized {deq.dtype} {tuple(deq.shape)}")
    if not torch.equal(qs.code.cpu(), torch.from_numpy(NF4)):
        raise RuntimeError(f"{name}: unexpected code book")

    xf = x.float().reshape(-1).numpy()
    r_packed, r_absmax = ref_quantize_nf4_cpu(xf, bs)
    if not np.array_equal(packed.reshape(-1).numpy(), r_packed):
        raise RuntimeError(f"{name}: packed codes differ from the re-derivation")
    c_packed, c_absmax = ref_quantize_nf4_cuda(xf, bs)

    t = {f"{name}.input": x, f"{name}.packed": packed, f"{name}.quant_map": qs.code.clone()}
    meta = {"name": name, "dtype": str(dtype).replace("torch.", ""), "shape": list(shape), "n": n,
            "blocksize": bs, "blocks": -(-n // bs), "double_quant": dq, "offset": None, "offset_hex": None,
            "nested_blocks": None,
            "cuda_packed_mismatches": int(np.sum(packed.reshape(-1).numpy() != c_packed))}
    if not dq:
        if not np.array_equal(qs.absmax.numpy(), r_absmax):
            raise RuntimeError(f"{name}: absmax differs from the re-derivation")
        meta["cuda_absmax_mismatches"] = int(np.sum(qs.absmax.numpy().view(np.uint32) != c_absmax.view(np.uint32)))
        t[f"{name}.absmax"] = qs.absmax
        eff_absmax = qs.absmax.numpy()
    else:
        offset = np.float32(qs.offset.item())
        if offset != np.float32(np.float32(r_absmax.astype(np.float32)).mean(dtype=np.float32)) and \
                abs(float(offset) - float(r_absmax.astype(np.float64).mean())) > 1e-6 * float(abs(offset)):
            raise RuntimeError(f"{name}: offset is not the mean of absmax")
        centred = (r_absmax - offset).astype(np.float32)
        code8 = qs.state2.code.numpy().astype(np.float32)
        if not torch.equal(qs.state2.code, F.create_dynamic_map()):
            raise RuntimeError(f"{name}: nested map is not create_dynamic_map()")
        q8 = qs.absmax.numpy()
        matched = None
        for fused in (False, True):  # the library may or may not contract the index computation into an FMA
            rq, ram = ref_quantize_8bit_cpu(centred, code8, NESTED_BLOCKSIZE, fused)
            if np.array_equal(rq, q8) and np.array_equal(ram, qs.state2.absmax.numpy()):
                matched = fused
                break
        if matched is None:
            raise RuntimeError(f"{name}: nested 8-bit codes differ from the re-derivation")
        cq, cam = ref_quantize_8bit_cuda(centred, code8, NESTED_BLOCKSIZE)
        eff_absmax = F.dequantize_blockwise(qs.absmax, qs.state2) + qs.offset
        r_eff = ((code8[q8] * np.repeat(qs.state2.absmax.numpy(), NESTED_BLOCKSIZE)[:q8.size]).astype(np.float32)
                 + offset).astype(np.float32)
        if not np.array_equal(eff_absmax.numpy(), r_eff):
            raise RuntimeError(f"{name}: dequantized absmax differs from the re-derivation")
        eff_absmax = eff_absmax.numpy()
        t[f"{name}.absmax"] = qs.absmax
        t[f"{name}.nested_absmax"] = qs.state2.absmax
        t[f"{name}.nested_quant_map"] = qs.state2.code.clone()
        t[f"{name}.offset"] = torch.tensor([float(offset)], dtype=torch.float32)
        t[f"{name}.absmax_dequant"] = torch.from_numpy(eff_absmax.copy())
        meta.update(offset=repr(float(offset)), offset_hex=f32hex(offset), nested_blocks=int(qs.state2.absmax.numel()),
                    cuda_absmax_q_mismatches=int(np.sum(cq != q8)),
                    cuda_nested_absmax_mismatches=int(np.sum(cam.view(np.uint32) !=
                                                             qs.state2.absmax.numpy().view(np.uint32))))
    r_deq = to_dtype(ref_dequantize(packed.numpy(), eff_absmax, n, bs), dtype).reshape(shape)
    meta["cpu_native_dequant_wrong"] = not same_bits(deq, r_deq)
    if meta["cpu_native_dequant_wrong"]:
        # bitsandbytes' native CPU kernel (AVX-512 path) indexes absmax per row when a row's length is a multiple
        # of 16 but not of the blocksize; its pure-torch default backend (what it uses for odd row lengths, and what
        # matches CUDA) gets it right. Store that one, and say so in the metadata.
        deq = default_backend_dequant(packed, torch.from_numpy(np.ascontiguousarray(eff_absmax)), bs, shape, dtype)
        if not same_bits(deq, r_deq):
            raise RuntimeError(f"{name}: dequantized values differ from the re-derivation")
        print(f"nf4: {name}: bitsandbytes' native CPU dequantize_4bit is wrong for this shape; stored the "
              f"default-backend (CUDA-equivalent) result")
    t[f"{name}.dequant"] = deq.contiguous()
    err = gc.rel_l2(deq.float(), x.float())
    return t, meta, err


# ---------------------------------------------------------------------------------------------------------------
# a real Linear4bit checkpoint


class Tiny(torch.nn.Module):
    def __init__(self, proj_in, proj_out):
        super().__init__()
        self.proj_in = proj_in
        self.proj_out = proj_out

    def forward(self, x):
        return self.proj_out(torch.nn.functional.silu(self.proj_in(x)))


def linear4bit_from(weight, bias, compress_statistics):
    out_f, in_f = weight.shape
    layer = bnb.nn.Linear4bit(in_f, out_f, bias=True, compute_dtype=torch.bfloat16,
                              compress_statistics=compress_statistics, quant_type="nf4", quant_storage=torch.uint8)
    layer.weight = bnb.nn.Params4bit(weight.clone(), requires_grad=False, compress_statistics=compress_statistics,
                                     quant_type="nf4", quant_storage=torch.uint8, module=layer)
    layer.bias = torch.nn.Parameter(bias.clone(), requires_grad=False)
    return layer


def w_scale(qs):
    if qs.nested:
        return (F.dequantize_blockwise(qs.absmax, qs.state2) + qs.offset).numpy()
    return qs.absmax.numpy()


def make_bnb_linear(out_dir, gen):
    src = {
        "proj_in.weight": (torch.randn(128, 192, generator=gen) / math.sqrt(192)).to(torch.bfloat16),
        "proj_in.bias": (torch.randn(128, generator=gen) * 0.1).to(torch.bfloat16),
        "proj_out.weight": (torch.randn(48, 128, generator=gen) / math.sqrt(128)).to(torch.bfloat16),
        "proj_out.bias": (torch.randn(48, generator=gen) * 0.1).to(torch.bfloat16),
    }
    x = torch.randn(4, 192, generator=gen).to(torch.bfloat16)

    model = Tiny(linear4bit_from(src["proj_in.weight"], src["proj_in.bias"], True),
                 linear4bit_from(src["proj_out.weight"], src["proj_out.bias"], False))
    model = model.to("cpu")  # Params4bit.to(device) quantizes, as from_pretrained does when it places the weights
    for layer in (model.proj_in, model.proj_out):
        if not layer.weight.bnb_quantized:
            raise RuntimeError("Linear4bit weight was not quantized by .to('cpu')")
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    path = os.path.join(out_dir, "nf4_bnb_linear.safetensors")
    save_file(sd, path, metadata={"format": "pt"})

    # Reload through bitsandbytes' own deserialisation to prove the file is a valid checkpoint.
    with safe_open(path, framework="pt") as f:
        loaded = {k: f.get_tensor(k) for k in f.keys()}
    weights_f32 = {}
    for lname in ("proj_in", "proj_out"):
        qs_dict = {k[len(lname) + len(".weight."):]: v for k, v in loaded.items()
                   if k.startswith(lname + ".weight.")}
        qs = F.QuantState.from_dict(qs_dict, device=torch.device("cpu"))
        w = F.dequantize_4bit(loaded[lname + ".weight"], qs)
        if w.dtype != torch.bfloat16 or tuple(w.shape) != tuple(src[lname + ".weight"].shape):
            raise RuntimeError(f"{lname}: reloaded weight {w.dtype} {tuple(w.shape)}")
        w32 = F.dequantize_4bit(loaded[lname + ".weight"],
                                F.QuantState.from_dict(dict(qs_dict), device=torch.device("cpu")).__class__(
                                    absmax=qs.absmax, shape=qs.shape, code=qs.code, blocksize=qs.blocksize,
                                    quant_type=qs.quant_type, dtype=torch.float32, offset=qs.offset,
                                    state2=qs.state2))
        if not torch.equal(w32.to(torch.bfloat16), w):
            raise RuntimeError(f"{lname}: float32 and bf16 dequantization disagree")
        r = ref_dequantize(loaded[lname + ".weight"].numpy(), w_scale(qs), w32.numel(), qs.blocksize)
        if not np.array_equal(w32.reshape(-1).numpy(), r):
            raise RuntimeError(f"{lname}: dequantized weight differs from the re-derivation")
        weights_f32[lname] = w32
        err = gc.rel_l2(w32, src[lname + ".weight"].float())
        print(f"nf4 bnb linear: {lname} reloaded with QuantState.from_dict, weight relative L2 error {err:.4f}")

    with torch.no_grad():
        h = model.proj_in(x)
        y = model.proj_out(torch.nn.functional.silu(h))
        ref = torch.nn.functional.linear(
            torch.nn.functional.silu(torch.nn.functional.linear(x.float(), weights_f32["proj_in"],
                                                                src["proj_in.bias"].float())),
            weights_f32["proj_out"], src["proj_out.bias"].float())
    err = gc.rel_l2(y.float(), ref)
    print(f"nf4 bnb linear: bitsandbytes CPU forward vs float32 reference from dequantized weights: relative L2 "
          f"{err:.2e}")
    if err > 2e-2:
        raise RuntimeError("bitsandbytes' CPU forward does not match the dequantized weights")
    src_out = dict(src)
    src_out.update({"input": x, "proj_in.output": h.contiguous(), "output": y.contiguous(),
                    "reference_output": ref.contiguous()})
    src_path = os.path.join(out_dir, "nf4_bnb_linear_source.safetensors")
    gc.write_safetensors(src_path, src_out, {"seed": str(SEED), "bitsandbytes_version": bnb.__version__,
                                             "torch_version": torch.__version__,
                                             "model": "proj_out(silu(proj_in(input)))"})
    qs_json = {k: bytes(v.tolist()).decode("utf-8") for k, v in sd.items() if "quant_state" in k}
    for k, v in qs_json.items():
        print(f"nf4 bnb linear: {k} = {v}")
    return [path, src_path], sorted(sd)


def main():
    gc.deterministic_torch()
    out_dir = gc.out_dir()
    gen = torch.Generator().manual_seed(SEED)
    tensors, metas, rows = {}, [], []
    for name, dtype, shape, bs, dq, recipe in CASES:
        t, meta, err = run_case(name, dtype, shape, bs, dq, recipe, gen)
        tensors.update(t)
        metas.append(meta)
        cuda = f"{meta['cuda_packed_mismatches']}"
        if dq:
            cuda += f" / q8 {meta['cuda_absmax_q_mismatches']}"
        rows.append((name, meta["dtype"], "x".join(map(str, shape)), bs, "yes" if dq else "no", meta["blocks"],
                     meta["offset"] or "", f"{err:.4f}", cuda))
    path = os.path.join(out_dir, "nf4_cases.safetensors")
    differ = [i for i in range(15) if MIDS[i] != CUDA_MIDS[i]]
    print(f"nf4: CPU midpoints vs CUDA decision-tree thresholds differ (by one float32 ulp) at boundaries {differ}")
    thresholds = {"cpu": [float(v).hex() for v in MIDS], "cuda": [float(v).hex() for v in CUDA_MIDS]}
    gc.write_safetensors(path, tensors, {"cases": json.dumps(metas), "seed": str(SEED),
                                         "nf4_thresholds": json.dumps(thresholds),
                                         "bitsandbytes_version": bnb.__version__,
                                         "torch_version": torch.__version__})
    gc.print_table("\nnf4.py cases (all re-derived independently and bit-identical)",
                   ["case", "dtype", "shape", "block", "dq", "blocks", "offset", "rel L2", "CUDA would differ"],
                   rows)
    paths, keys = make_bnb_linear(out_dir, gen)
    print("nf4 bnb linear keys: " + ", ".join(keys))
    rows = [(os.path.relpath(p, gc.repo_root()), os.path.getsize(p), gc.sha256_file(p)[:16])
            for p in [path] + paths]
    gc.print_table("\nnf4.py fixtures", ["file", "bytes", "sha256[:16]"], rows)


if __name__ == "__main__":
    main()
