"""Losses: closed-form KLs against numerical integration, gradients, masking, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from laplace_landmarks.heatmaps import render_laplace
from laplace_landmarks.losses import (
    GaussianKLLoss,
    LaplaceKLLoss,
    SoftargmaxLoss,
    discriminator_loss,
    gaussian_kl,
    gaussian_kl_loss,
    generator_adversarial_loss,
    junk_loss,
    laplace_kl,
    laplace_kl_loss,
    softargmax_loss,
)

D = torch.float64


def _simpson(f, a, b, n=20000):
    x = np.linspace(a, b, 2 * n + 1)
    y = f(x)
    h = (b - a) / (2 * n)
    return h / 3 * (y[0] + y[-1] + 4 * y[1:-1:2].sum() + 2 * y[2:-1:2].sum())


def _kl_numeric(logp1, logp2, kinks, lo, hi):
    """∫ p1 log(p1/p2), in pieces between the kinks so each piece is smooth."""
    edges = [lo, *sorted(kinks), hi]
    f = lambda x: np.exp(logp1(x)) * (logp1(x) - logp2(x))  # noqa: E731
    return sum(_simpson(f, a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a)


def _lap_logpdf(m, s):
    return lambda x: -np.log(2 * s) - np.abs(x - m) / s


def _gauss_logpdf(m, v):
    return lambda x: -0.5 * np.log(2 * np.pi * v) - (x - m) ** 2 / (2 * v)


CASES = [(0.0, 1.0, 0.7, 2.0), (1.3, 0.5, -0.4, 1.5), (2.0, 3.0, 2.0, 1.0), (-1.0, 1.2, 3.5, 0.8)]


@pytest.mark.parametrize("m_pred, s_pred, m_t, s_t", CASES)
@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_laplace_kl_matches_numerical_integration(m_pred, s_pred, m_t, s_t, direction):
    mean = torch.tensor([[[m_pred, 0.0]]], dtype=D)
    scale = torch.tensor([[[s_pred, 1.0]]], dtype=D)
    target = torch.tensor([[[m_t, 0.0]]], dtype=D)
    t_scale = torch.tensor([[[s_t, 1.0]]], dtype=D)
    closed = laplace_kl(mean, scale, target, t_scale, direction).item()  # y axis adds 0
    pred, tgt = _lap_logpdf(m_pred, s_pred), _lap_logpdf(m_t, s_t)
    p1, p2 = (tgt, pred) if direction == "forward" else (pred, tgt)
    numeric = _kl_numeric(p1, p2, [m_pred, m_t], -80, 80)
    assert abs(closed - numeric) / abs(numeric) <= 1e-4


@pytest.mark.parametrize("m_pred, s_pred, m_t, s_t", CASES)
@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_gaussian_kl_matches_numerical_integration(m_pred, s_pred, m_t, s_t, direction):
    mean = torch.tensor([[[0.0, m_pred]]], dtype=D)
    var = torch.tensor([[[1.0, s_pred]]], dtype=D)
    target = torch.tensor([[[0.0, m_t]]], dtype=D)
    t_var = torch.tensor([[[1.0, s_t]]], dtype=D)
    closed = gaussian_kl(mean, var, target, t_var, direction).item()
    pred, tgt = _gauss_logpdf(m_pred, s_pred), _gauss_logpdf(m_t, s_t)
    p1, p2 = (tgt, pred) if direction == "forward" else (pred, tgt)
    numeric = _kl_numeric(p1, p2, [], -60, 60)
    assert abs(closed - numeric) / abs(numeric) <= 1e-4


def test_laplace_kl_golden_value():
    # KL(Lap(0,1) || Lap(1,2)) = log 2 + 1/2 + (1/2) e^{-1} - 1
    value = laplace_kl(
        torch.tensor([[[1.0, 5.0]]], dtype=D),
        torch.tensor([[[2.0, 1.0]]], dtype=D),
        torch.tensor([[[0.0, 5.0]]], dtype=D),
        torch.tensor([[[1.0, 1.0]]], dtype=D),
    )
    assert value.item() == pytest.approx(math.log(2) + 0.5 + 0.5 * math.exp(-1) - 1, abs=1e-12)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
def test_gradcheck_distribution_kls(direction):
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(2, 3, 2, generator=g, dtype=D, requires_grad=True)
    scale = (torch.rand(2, 3, 2, generator=g, dtype=D) + 0.5).requires_grad_()
    target = torch.randn(2, 3, 2, generator=g, dtype=D) + 3.0
    assert gradcheck(lambda m, s: laplace_kl(m, s, target, 1.3, direction), (mean, scale))
    assert gradcheck(lambda m, s: gaussian_kl(m, s, target, 0.9, direction), (mean, scale))


def _logits_and_target(b=2, k=3, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, size, size, generator=g, dtype=D, requires_grad=True)
    target = torch.rand(b, k, 2, generator=g, dtype=D) * (size - 1)
    return logits, target


@pytest.mark.parametrize(
    "loss",
    [
        lambda lg, t: softargmax_loss(lg, t, norm="l2"),
        lambda lg, t: softargmax_loss(lg, t, norm="l1"),
        lambda lg, t: softargmax_loss(lg, t, norm="sql2"),
        lambda lg, t: laplace_kl_loss(lg, t, 1.0, direction="forward"),
        lambda lg, t: laplace_kl_loss(lg, t, 1.0, direction="reverse"),
        lambda lg, t: gaussian_kl_loss(lg, t, 1.0, direction="forward"),
        lambda lg, t: gaussian_kl_loss(lg, t, 1.0, direction="reverse"),
    ],
)
def test_gradcheck_losses_on_logits(loss):
    logits, target = _logits_and_target()
    assert gradcheck(lambda x: loss(x, target), (logits,), fast_mode=True)


def test_gradcheck_adversarial_losses():
    g = torch.Generator().manual_seed(2)
    real = torch.randn(2, 1, 3, 3, generator=g, dtype=D, requires_grad=True)
    fake = torch.randn(2, 1, 3, 3, generator=g, dtype=D, requires_grad=True)
    assert gradcheck(discriminator_loss, (real, fake))
    assert gradcheck(generator_adversarial_loss, (fake,))


def test_adversarial_golden_values():
    zeros = torch.zeros(1, 1, 2, 2)
    assert discriminator_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))
    assert generator_adversarial_loss(zeros).item() == pytest.approx(math.log(2))
    assert discriminator_loss(torch.full_like(zeros, 30), torch.full_like(zeros, -30)).item() < 1e-9


def test_laplace_kl_is_smallest_at_the_target_mean_and_scale():
    target = torch.tensor([[[3.0, 4.0]]], dtype=D)
    bt = 1.2
    best = laplace_kl(target, torch.full_like(target, bt), target, bt).item()
    assert best == pytest.approx(0.0, abs=1e-12)
    for dm in (-0.3, -0.01, 0.01, 0.3):
        for ds in (0.5, 0.9, 1.0, 1.1, 2.0):
            if dm == 0 and ds == 1.0:
                continue
            for direction in ("forward", "reverse"):
                value = laplace_kl(
                    target + dm, torch.full_like(target, bt * ds), target, bt, direction
                )
                assert value.item() > best


def test_laplace_kl_loss_on_rendered_target_heatmap_is_near_zero():
    target = torch.tensor([[[20.3, 41.7], [60.2, 33.3]]], dtype=D)
    logits = render_laplace(target, 1.0, 80).clamp_min(1e-300).log()
    assert laplace_kl_loss(logits, target, 1.0).item() < 1e-6
    assert laplace_kl_loss(logits, target + 2.0, 1.0).item() > 1.0


@pytest.mark.parametrize(
    "loss", [SoftargmaxLoss(), LaplaceKLLoss(1.0), GaussianKLLoss(1.0), SoftargmaxLoss("l1")]
)
def test_masked_landmark_contributes_exactly_nothing(loss):
    logits, target = _logits_and_target(seed=3)
    vis = torch.tensor([[1, 0, 1], [1, 1, 0]], dtype=torch.bool)
    base = loss(logits, target, vis)
    changed = logits.detach().clone()
    changed[0, 1] = torch.randn(8, 8, dtype=D) * 10
    changed[1, 2] = 0.0
    target2 = target.clone()
    target2[0, 1] = 0.0
    assert loss(changed, target2, vis).item() == base.item()
    base.backward()
    assert logits.grad[0, 1].abs().max().item() == 0.0
    assert logits.grad[1, 2].abs().max().item() == 0.0
    assert logits.grad[0, 0].abs().max().item() > 0.0
    full = loss(logits, target, torch.ones(2, 3, dtype=torch.bool))
    torch.testing.assert_close(full, loss(logits, target))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda lg, t: laplace_kl_loss(lg[0], t), "logits"),
        (lambda lg, t: laplace_kl_loss(lg, t[:, :2]), "target"),
        (lambda lg, t: laplace_kl_loss(lg, t, target_scale=0.0), "target_scale"),
        (lambda lg, t: gaussian_kl_loss(lg, t, target_variance=-1.0), "target_variance"),
        (lambda lg, t: softargmax_loss(lg, t.masked_fill(t > 3, float("nan"))), "target"),
        (lambda lg, t: laplace_kl_loss(lg, t, visibility=torch.ones(2, 2)), "visibility"),
        (lambda lg, t: softargmax_loss(lg, t, norm="huber"), "norm"),
        (lambda lg, t: laplace_kl_loss(lg, t, direction="both"), "direction"),
        (lambda lg, t: laplace_kl(t, torch.zeros_like(t), t, 1.0), "scale"),
        (lambda lg, t: laplace_kl(t, torch.ones(2, 2, 2, dtype=D), t, 1.0), "scale"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    logits, target = _logits_and_target()
    with pytest.raises(ValueError, match=name):
        call(logits.detach(), target)


def test_junk_loss_is_the_kl_from_uniform_and_widens_the_scale():
    flat = torch.zeros(2, 3, 8, 8)
    assert abs(junk_loss(flat).item()) < 1e-5
    one_hot = torch.full((1, 1, 8, 8), -1e4)
    one_hot[0, 0, 3, 4] = 0.0
    # KL(uniform || one-hot-ish) grows with the logit gap; check the closed form on a small case
    logits = torch.randn(2, 3, 4, 5, dtype=D)
    p = torch.softmax(logits.flatten(2), -1)
    expected = (-(p.log()).mean(-1) - math.log(20)).mean()
    assert torch.allclose(junk_loss(logits), expected, atol=1e-12)
    assert torch.allclose(junk_loss(2 * logits, temperature=2.0), expected, atol=1e-12)
    assert junk_loss(one_hot).item() > 1000
    # gradient steps on the junk term spread a peaked heatmap (its scale grows)
    peaked = render_laplace(torch.tensor([[[4.0, 3.0]]]), 0.5, (8, 8)).log().requires_grad_()
    start = p_scale(peaked.detach())
    optimizer = torch.optim.SGD([peaked], lr=1.0)
    for _ in range(20):
        optimizer.zero_grad()
        junk_loss(peaked).backward()
        optimizer.step()
    assert p_scale(peaked.detach()) > 2 * start


def p_scale(logits: torch.Tensor) -> float:
    """Mean absolute deviation of the heatmap along x (heatmap pixels)."""
    p = torch.softmax(logits.flatten(2), -1).reshape(logits.shape)[0, 0]
    xs = torch.arange(p.shape[-1], dtype=p.dtype)
    px = p.sum(0)
    mean = (px * xs).sum()
    return float((px * (xs - mean).abs()).sum())
