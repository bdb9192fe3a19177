"""Checks tests/data/golden/nf4_cases.safetensors (made on the CPU by nf4.py) against bitsandbytes' CUDA kernels.

Not part of regenerate.sh: it needs a CUDA GPU with torch and bitsandbytes. For each case it
  1. quantizes C.input on the GPU and counts the packed bytes / absmax values that differ from the CPU fixture,
     next to the counts nf4.py predicted from its emulation of the CUDA kernel (metadata cuda_*), and how many of
     the differing bytes lie outside all-zero blocks (the one systematic difference; see nf4.py's header);
  2. dequantizes the fixture's own packed codes and absmax (and nested state) on the GPU and compares the result
     bit for bit with C.dequant: this is the contract a loader of bitsandbytes checkpoints has to meet.
Exits 1 if step 2 differs anywhere, or if step 1 differs from the prediction.

Usage: python tools/golden/nf4_cuda_check.py [path/to/nf4_cases.safetensors]
"""

import json
import os
import sys

import torch
from safetensors import safe_open

import bitsandbytes as bnb
import bitsandbytes.functional as F


def bits(t):
    t = t.contiguous()
    return t.view(torch.int16) if t.element_size() == 2 else t.view(torch.int32) if t.element_size() == 4 else t


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "golden", "nf4_cases.safetensors")
    dev = torch.device("cuda")
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        cases = json.loads(meta["cases"])
        t = {k: f.get_tensor(k) for k in f.keys()}
    print(f"bitsandbytes {bnb.__version__}, torch {torch.__version__}, {torch.cuda.get_device_name(0)}; "
          f"fixture made with bitsandbytes {meta['bitsandbytes_version']}, torch {meta['torch_version']}")
    failed = False
    header = ("case", "packed diff", "predicted", "outside zero blocks", "absmax diff", "predicted", "offset same",
              "dequant diff")
    rows = []
    for c in cases:
        n = c["name"]
        x = t[f"{n}.input"].to(dev)
        dq = c["double_quant"]
        packed, qs = F.quantize_4bit(x, blocksize=c["blocksize"], compress_statistics=dq, quant_type="nf4")
        packed = packed.cpu()
        diff = (packed.reshape(-1) != t[f"{n}.packed"].reshape(-1))
        # blocks whose float absmax is zero, per packed byte (a byte holds elements 2i and 2i+1)
        if dq:
            eff = t[f"{n}.absmax_dequant"]
            true_absmax = F.quantize_4bit(x.float(), blocksize=c["blocksize"], quant_type="nf4")[1].absmax.cpu()
        else:
            eff = t[f"{n}.absmax"]
            true_absmax = eff
        elem_block = torch.arange(packed.numel() * 2) // c["blocksize"]
        elem_block = elem_block.clamp(max=true_absmax.numel() - 1)
        zero_elem = (true_absmax[elem_block] <= 1e-38)
        zero_byte = zero_elem[0::2] | zero_elem[1::2]
        outside = int((diff & ~zero_byte).sum())
        if dq:
            am_diff = int((qs.absmax.cpu() != t[f"{n}.absmax"]).sum())
            am_pred = c["cuda_absmax_q_mismatches"]
            off_same = bool(torch.equal(bits(qs.offset.reshape(1).float().cpu()), bits(t[f"{n}.offset"])))
        else:
            am_diff = int((bits(qs.absmax.cpu()) != bits(t[f"{n}.absmax"])).sum())
            am_pred = c["cuda_absmax_mismatches"]
            off_same = ""
        if int(diff.sum()) != c["cuda_packed_mismatches"] or am_diff != am_pred:
            failed = True

        # dequantize the fixture's codes on the GPU
        if dq:
            state2 = F.QuantState(absmax=t[f"{n}.nested_absmax"].to(dev), code=t[f"{n}.nested_quant_map"].to(dev),
                                  blocksize=256, dtype=torch.float32)
            qsf = F.QuantState(absmax=t[f"{n}.absmax"].to(dev), shape=x.shape, code=t[f"{n}.quant_map"].to(dev),
                               blocksize=c["blocksize"], quant_type="nf4", dtype=x.dtype,
                               offset=t[f"{n}.offset"].reshape(()).to(dev), state2=state2)
            eff_gpu = (F.dequantize_blockwise(qsf.absmax, state2) + qsf.offset).cpu()
            if not torch.equal(bits(eff_gpu), bits(eff)):
                print(f"{n}: absmax_dequant differs on the GPU in {int((bits(eff_gpu) != bits(eff)).sum())} blocks")
                failed = True
        else:
            qsf = F.QuantState(absmax=t[f"{n}.absmax"].to(dev), shape=x.shape, code=t[f"{n}.quant_map"].to(dev),
                               blocksize=c["blocksize"], quant_type="nf4", dtype=x.dtype)
        deq = F.dequantize_4bit(t[f"{n}.packed"].to(dev), qsf).cpu().reshape(x.shape)
        deq_diff = int((bits(deq) != bits(t[f"{n}.dequant"])).sum())
        if deq_diff:
            failed = True
        rows.append((n, int(diff.sum()), c["cuda_packed_mismatches"], outside, am_diff, am_pred, off_same, deq_diff))
    lin = os.path.join(os.path.dirname(path), "nf4_bnb_linear.safetensors")
    src = os.path.join(os.path.dirname(path), "nf4_bnb_linear_source.safetensors")
    if os.path.exists(lin) and os.path.exists(src):
        with safe_open(lin, framework="pt") as f:
            ck = {k: f.get_tensor(k) for k in f.keys()}
        with safe_open(src, framework="pt") as f:
            s = {k: f.get_tensor(k) for k in f.keys()}
        for layer in ("proj_in", "proj_out"):
            qd = {k[len(layer) + 8:]: v for k, v in ck.items() if k.startswith(layer + ".weight.")}
            qs = F.QuantState.from_dict(qd, device=dev)
            w = F.dequantize_4bit(ck[layer + ".weight"].to(dev), qs).cpu()
            wq, qs2 = F.quantize_4bit(s[layer + ".weight"].to(dev), blocksize=64, compress_statistics=qs.nested,
                                      quant_type="nf4")
            same_codes = int((wq.cpu() != ck[layer + ".weight"]).sum())
            rel = float((w.float() - s[layer + ".weight"].float()).norm() / s[layer + ".weight"].float().norm())
            print(f"nf4_bnb_linear {layer}: loaded on the GPU with QuantState.from_dict, weight rel L2 {rel:.4f}; "
                  f"GPU re-quantization differs in {same_codes} packed bytes")
        x = s["input"].to(dev)
        lay = {}
        for layer in ("proj_in", "proj_out"):
            qd = {k[len(layer) + 8:]: v for k, v in ck.items() if k.startswith(layer + ".weight.")}
            qs = F.QuantState.from_dict(qd, device=dev)
            lay[layer] = (F.dequantize_4bit(ck[layer + ".weight"].to(dev), qs), ck[layer + ".bias"].to(dev), qs)
        h = bnb.matmul_4bit(x, ck["proj_in.weight"].to(dev).t(), bias=lay["proj_in"][1], quant_state=lay["proj_in"][2])
        y = bnb.matmul_4bit(torch.nn.functional.silu(h), ck["proj_out.weight"].to(dev).t(), bias=lay["proj_out"][1],
                            quant_state=lay["proj_out"][2])
        rel = float((y.float().cpu() - s["reference_output"]).norm() / s["reference_output"].norm())
        rel_cpu = float((y.float().cpu() - s["output"].float()).norm() / s["output"].float().norm())
        print(f"nf4_bnb_linear forward on the GPU (bnb.matmul_4bit): rel L2 {rel:.2e} vs reference_output, "
              f"{rel_cpu:.2e} vs the CPU bf16 output")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
    print("FAILED" if failed else "OK: CUDA matches the fixture where predicted, and dequantizes it bit for bit")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
