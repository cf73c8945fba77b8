"""The heatmap maths: softmax, softargmax, scales and rendering (SPEC §1, ω of §3)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.autograd import gradcheck

from laplace_landmarks.heatmaps import (
    gaussian_variance,
    laplace_scale,
    render_gaussian,
    render_laplace,
    softargmax,
    spatial_softmax,
)

D = torch.float64


def _logits(b=2, k=3, h=6, w=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, k, h, w, generator=g, dtype=D, requires_grad=True)


def test_spatial_softmax_sums_to_one_and_respects_temperature():
    logits = _logits()
    probs = spatial_softmax(logits)
    assert probs.shape == logits.shape
    torch.testing.assert_close(probs.sum((2, 3)), torch.ones(2, 3, dtype=D))
    sharp = spatial_softmax(logits, temperature=0.1)
    assert sharp.amax((2, 3)).min() > probs.amax((2, 3)).min()


@pytest.mark.parametrize("y, x", [(0, 0), (0, 6), (5, 0), (5, 6), (2, 3)])
def test_one_hot_heatmap_decodes_to_exactly_its_pixel(y, x):
    probs = torch.zeros(1, 1, 6, 7, dtype=D)
    probs[0, 0, y, x] = 1.0
    assert softargmax(probs).tolist() == [[[float(x), float(y)]]]
    assert laplace_scale(probs, softargmax(probs)).sub(1e-6).abs().max() < 1e-12


def test_golden_values_on_a_two_pixel_heatmap():
    probs = torch.zeros(1, 1, 3, 4, dtype=D)
    probs[0, 0, 1, 0] = 0.25  # x=0, y=1
    probs[0, 0, 1, 3] = 0.75  # x=3, y=1
    mean = softargmax(probs)
    torch.testing.assert_close(mean, torch.tensor([[[2.25, 1.0]]], dtype=D))
    # |0-2.25|*.25 + |3-2.25|*.75 = 1.125 ; variance .25*2.25^2 + .75*.75^2 = 1.6875
    torch.testing.assert_close(
        laplace_scale(probs, mean)[0, 0, 0], torch.tensor(1.125 + 1e-6, dtype=D)
    )
    torch.testing.assert_close(
        gaussian_variance(probs, mean)[0, 0, 0], torch.tensor(1.6875 + 1e-6, dtype=D)
    )


def test_gradcheck_softmax_softargmax_and_scales():
    logits = _logits(1, 2, 4, 5)
    assert gradcheck(lambda t: spatial_softmax(t, 0.7), (logits,))
    assert gradcheck(lambda t: softargmax(spatial_softmax(t)), (logits,))
    assert gradcheck(
        lambda t: laplace_scale(spatial_softmax(t), softargmax(spatial_softmax(t))), (logits,)
    )
    assert gradcheck(
        lambda t: gaussian_variance(spatial_softmax(t), softargmax(spatial_softmax(t))), (logits,)
    )


@pytest.mark.parametrize("render", [render_laplace, render_gaussian])
def test_gradcheck_render(render):
    points = torch.tensor([[[3.3, 4.6], [5.1, 2.2]]], dtype=D, requires_grad=True)
    scale = torch.tensor([[[1.2, 1.7], [2.0, 1.1]]], dtype=D, requires_grad=True)
    assert gradcheck(lambda p, s: render(p, s, (9, 10)), (points, scale), fast_mode=True)


@settings(max_examples=60, deadline=None)
@given(
    x=st.floats(0.0, 1.0),
    y=st.floats(0.0, 1.0),
    scale=st.floats(1.0, 4.0),
    kind=st.sampled_from(["laplace", "gaussian"]),
)
def test_rendered_heatmaps_decode_back_to_point_and_scale(x, y, scale, kind):
    # Points at least 3 px from the border, and far enough that the tails are not cut:
    # on a finite grid no distribution 3 px from the edge can have b = 4 px (SPEC note).
    margin = max(3.0, 3.0 * scale)
    size = 80
    point = torch.tensor(
        [[[margin + x * (size - 1 - 2 * margin), margin + y * (size - 1 - 2 * margin)]]], dtype=D
    )
    render = render_laplace if kind == "laplace" else render_gaussian
    heat = render(point, scale, size)
    torch.testing.assert_close(heat.sum((2, 3)), torch.ones(1, 1, dtype=D))
    mean = softargmax(heat)
    assert (mean - point).abs().max() <= 0.05
    measured = (
        laplace_scale(heat, mean) if kind == "laplace" else gaussian_variance(heat, mean).sqrt()
    )
    assert ((measured / scale) - 1).abs().max() <= 0.05


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: spatial_softmax(torch.zeros(2, 3, 4)), "logits"),
        (lambda: softargmax(torch.zeros(3, 4, 5)), "probs"),
        (lambda: laplace_scale(torch.ones(1, 2, 3, 3), torch.zeros(1, 3, 2)), "mean"),
        (lambda: render_laplace(torch.zeros(1, 2, 2), 0.0, 8), "scale"),
        (lambda: render_laplace(torch.zeros(1, 2, 2), -1.0, 8), "scale"),
        (lambda: render_gaussian(torch.full((1, 2, 2), float("nan")), 1.0, 8), "points"),
        (lambda: render_gaussian(torch.zeros(2, 2), 1.0, 8), "points"),
        (lambda: spatial_softmax(torch.zeros(1, 1, 2, 2), temperature=0.0), "temperature"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
