"""Helpers shared by the golden generators of the other FLUX components (clip.py, t5.py, vae.py).

Each of those builds a tiny configuration of the real transformers/diffusers class, redraws every parameter from a
seeded generator so that none is trivial (norm weights away from 1, biases away from 0), runs it on the CPU in
float32, cross-checks against float64, and proves that every parameter influences the outputs.
"""

import copy
import math

import torch

import golden_common as gc


def init_params(named_params, gen, rule):
    """Redraws every parameter in state-dict order. rule(name, param) returns a tensor of the parameter's shape
    drawn from `gen`, or None to fail loudly (every parameter must have a deliberate initialisation)."""
    with torch.no_grad():
        for name, p in named_params:
            v = rule(name, p)
            if v is None:
                raise RuntimeError(f"no initialisation rule for parameter '{name}' {tuple(p.shape)}")
            p.copy_(v.to(p.dtype))


def fan_in_normal(p, gen, gain=1.0):
    """N(0, (gain / sqrt(fan_in))^2) for Linear [out, in] and Conv2d [out, in, kh, kw] weights."""
    fan_in = p[0].numel()
    return torch.randn(p.shape, generator=gen) * (gain / math.sqrt(fan_in))


def check_every_weight_matters(model, params_of, forward, seed):
    """The gradient of a fixed random projection of the outputs must be non-zero and finite for every parameter
    params_of(model) yields (name, parameter). Returns the least influential (name, |grad| * |w|)."""
    model = copy.deepcopy(model)
    params = list(params_of(model))
    for _, p in params:
        p.requires_grad_(True)
    outs = forward(model)
    g = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=g)).sum() for o in outs)
    loss.backward()
    worst = None
    for name, p in params:
        if p.grad is None or not torch.isfinite(p.grad).all() or float(p.grad.abs().max()) == 0.0:
            raise RuntimeError(f"parameter '{name}' does not influence the output")
        rel = float(p.grad.norm() * p.detach().norm())
        if worst is None or rel < worst[1]:
            worst = (name, rel)
    return worst


def fp64_cross_check(outs32, outs64):
    """Largest relative L2 difference between the float32 and float64 runs, output by output."""
    return max(gc.rel_l2(a, b.float()) for a, b in zip(outs32, outs64))


def meta_parameter_count(build):
    """Parameters of a model built on the meta device (no memory): build() constructs it. Tied parameters count
    once, as model.parameters() yields them once."""
    with torch.device("meta"):
        model = build()
    return sum(p.numel() for p in model.parameters())
