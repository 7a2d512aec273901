"""breaklab.diagnostics against a slow, obvious version of every statistic it measures.

StepDiagnostics gets its numbers from a few batched passes (one padded matrix of |g|, bit tricks
for the zero counts, per-parameter norms combined on the host). Here each statistic is computed
again the plain way, parameter by parameter in float64, on gradients made to hold the cases that
matter: whole zero rows (dead units), scattered exact zeros, a parameter without a gradient, a
first layer with long rows (the MLP's 784) and one with short rows (a 3x3 convolution: the wide
matrix and its own view of the units). No training: the fast tier.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from breaklab.diagnostics import StepDiagnostics

RTOL = 1e-5


class ConvNet(nn.Module):
    """A first layer with 9-entry rows (3x3 kernel, one input channel), a BatchNorm, a head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8 * 6 * 6, 10)


def mlp() -> nn.Module:
    from breaklab.trainer import MLP

    return MLP()


def crafted_gradients(model: nn.Module, first: str, generator: torch.Generator) -> None:
    """Gradients with the cases the fast path handles apart: the first layer's units 0, 3 and 5
    all zero (dead), a third of its other entries exactly 0 (some -0.0), the last parameter
    without a gradient."""
    params = list(model.named_parameters())
    for name, p in params[:-1]:
        g = torch.randn(p.shape, generator=generator) * 1e-2
        if name == first:
            g[[0, 3, 5]] = 0.0
            scattered = torch.rand(p.shape, generator=generator) < 0.33
            g[scattered] = 0.0
            g.view(-1)[1::97] = -0.0
        p.grad = g
    params[-1][1].grad = None


def slow_record(model: nn.Module, first: str, before: dict[str, torch.Tensor], grads: dict[str, torch.Tensor | None],
                hidden: torch.Tensor, outputs: torch.Tensor, bns: list[nn.Module], unit_dim: int) -> dict:
    """Every statistic, the obvious way, in float64."""
    names = [n for n, _ in model.named_parameters()]
    g = {n: (grads[n] if grads[n] is not None else torch.zeros_like(before[n])).double() for n in names}
    after = {n: p.detach().double() for n, p in model.named_parameters()}
    total = sum(t.numel() for t in g.values())
    zeros = {n: int((t == 0).sum()) for n, t in g.items()}
    rows = g[first].reshape(g[first].shape[0], -1)
    update = {n: (before[n].double() - after[n]).norm().item() for n in names}
    h = hidden.double()
    others = [d for d in range(h.dim()) if d != unit_dim % h.dim()]
    out = outputs.double()
    bn_features = sum(bn.num_features for bn in bns)
    return {
        "grad_norm": math.sqrt(sum((t ** 2).sum().item() for t in g.values())),
        "grad_norm_by_layer": {n: t.norm().item() for n, t in g.items()},
        "grad_mean": {n: t.abs().mean().item() for n, t in g.items()},
        "zero_grad_frac": sum(zeros.values()) / total,
        "zero_grad_frac_by_layer": {n: zeros[n] / g[n].numel() for n in names},
        "dead_unit_frac": (rows == 0).all(dim=1).double().mean().item(),
        "update_ratio": math.sqrt(sum(u * u for u in update.values()))
        / math.sqrt(sum((before[n].double() ** 2).sum().item() for n in names)),
        "update_norm_by_layer": update,
        "act_first_mean": h.mean().item(),
        "act_first_var": h.var(unbiased=False).item(),
        "act_first_dead_frac": (h.amax(dim=others) == 0).double().mean().item(),
        "act_last_mean": out.mean().item(), "act_last_var": out.var(unbiased=False).item(),
        "logit_min": out.min().item(), "logit_max": out.max().item(),
        "logit_rowsum_mean": out.sum(dim=1).mean().item(),
        "bn_running_mean_abs": sum(bn.running_mean.double().abs().sum().item() for bn in bns) / bn_features,
        "bn_running_var_mean": sum(bn.running_var.double().sum().item() for bn in bns) / bn_features,
    }


def assert_close(fast, slow, where: str) -> None:
    if isinstance(slow, dict):
        assert set(fast) == set(slow), where
        for key in slow:
            assert_close(fast[key], slow[key], f"{where}.{key}")
    else:
        assert fast == pytest.approx(slow, rel=RTOL, abs=1e-12), where


@pytest.mark.parametrize("make, first, bn_names, unit_dim, hidden_shape", [
    (mlp, "fc1.weight", ["bn1"], -1, (64, 256)),
    (ConvNet, "conv.weight", ["bn"], 1, (16, 8, 6, 6)),
])
def test_every_statistic_equals_the_obvious_computation(make, first, bn_names, unit_dim, hidden_shape):
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    model = make()
    bns = [getattr(model, n) for n in bn_names]
    for bn in bns:  # running statistics that are not the initial 0 and 1
        bn.running_mean.normal_(generator=generator)
        bn.running_var.uniform_(0.5, 2.0, generator=generator)
    diag = StepDiagnostics(model, parameters=list(model.named_parameters()), first_layer=first,
                           batchnorms=bns, unit_dim=unit_dim)
    crafted_gradients(model, first, generator)
    grads = {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    diag.before_step()
    with torch.no_grad():  # an update of its own size per parameter; one parameter left as it was
        for i, (_, p) in enumerate(model.named_parameters()):
            if i != 1:
                p.add_(torch.randn(p.shape, generator=generator) * 10.0 ** -(i % 4 + 2))
    hidden = torch.relu(torch.randn(hidden_shape, generator=generator))
    hidden.select(unit_dim, 2).zero_()  # one unit that is 0 for every example
    outputs = torch.randn(hidden_shape[0], 10, generator=generator) * 3.0
    loss = torch.tensor(2.5)
    fast = diag.after_step(loss=loss, outputs=outputs, hidden=hidden, scale=1.0, step_skipped=False)
    slow = slow_record(model, first, before, grads, hidden, outputs, bns, unit_dim)
    assert_close({k: fast[k] for k in slow}, slow, "record")
    assert fast["loss"] == 2.5 and fast["grads_finite"] and fast["loss_finite"]
    assert slow["dead_unit_frac"] > 0 and slow["zero_grad_frac_by_layer"][first] > 0.2  # the crafted cases
    assert fast["update_norm_by_layer"][list(before)[1]] == 0.0


def test_a_non_finite_gradient_is_null_and_flagged():
    torch.manual_seed(0)
    model = mlp()
    diag = StepDiagnostics(model)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    model.fc2.weight.grad[0, 0] = float("inf")
    diag.before_step()
    record = diag.after_step(loss=torch.tensor(float("nan")), outputs=None, hidden=None, scale=1.0,
                             step_skipped=True)
    assert record["grad_norm"] is None and record["grad_norm_by_layer"]["fc2.weight"] is None
    assert record["grad_norm_by_layer"]["fc1.weight"] == 0.0
    assert not record["grads_finite"] and not record["loss_finite"] and record["loss"] is None
    assert record["act_first_mean"] is None and record["logit_max"] is None  # not seen: null
