"""CoCoNet losses and masks against hand-computed values on tiny inputs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from contrafuse.data.masks import MaskSource, read_mask
from contrafuse.saliency import MASK_METHOD, foreground_mask, ir_saliency, otsu_threshold
from contrafuse.losses.coconet import (
    base_loss,
    contrastive_ratio,
    coupled_contrastive_loss,
    data_sensitive_weights,
    entropy_measure,
    gaussian_window,
    gradient_measure,
    in_batch_shifts,
    source_weights,
    ssim_per_sample,
)


def test_gradient_measure_of_a_single_bright_pixel() -> None:
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 1.0
    # every Sobel tap lands inside the 3x3 output: sum |S_x| + sum |S_y| = 8 + 8 over 9 pixels
    assert gradient_measure(x).item() == pytest.approx(16 / 9 + 1e-5, rel=1e-6)
    # constant 0.3 with zero padding: only border columns (rows) respond, 0.3 x (3 + 4 + 4 + 3)
    # per border, two borders per kernel, two kernels, over 16 pixels
    assert gradient_measure(torch.full((1, 1, 4, 4), 0.3)).item() == pytest.approx(0.3 * 14 * 2 * 2 / 16 + 1e-5, rel=1e-6)


def test_entropy_is_per_sample_not_cumulative() -> None:
    constant = torch.full((1, 1, 4, 4), -1.0)  # all in bin 0
    halves = torch.cat([torch.full((1, 1, 2, 4), -1.0), torch.full((1, 1, 2, 4), 1.0)], 2)  # bins 0 and 255
    quarters = torch.tensor([-1.0, -0.5, 0.5, 1.0]).view(1, 1, 2, 2)  # bins 0, 63, 191, 255
    entropy = entropy_measure(torch.cat([constant, halves, torch.nn.functional.interpolate(quarters, size=(4, 4), mode="nearest")]))
    # the official cumulative histogram would give sample 1 the entropy of samples 0..1 (0.81 bits)
    torch.testing.assert_close(entropy, torch.tensor([0.0, 1.0, 2.0]) + 1e-4)


def test_data_sensitive_weights() -> None:
    w1, w2 = data_sensitive_weights(torch.tensor([0.6, 0.8, 1.0, 0.0]), torch.tensor([0.4, 0.2, 1.0, 0.0]), 0.5)
    expected = torch.tensor([1 / (1 + math.exp(-0.4)), 1 / (1 + math.exp(-1.2)), 0.5, 0.5])  # sigma((2a - 1) / c)
    torch.testing.assert_close(w1, expected)
    torch.testing.assert_close(w1 + w2, torch.ones(4))
    # the softmax form of the definition
    s = torch.tensor([0.6, 0.4])
    torch.testing.assert_close(data_sensitive_weights(s[:1], s[1:], 0.75)[0], torch.softmax(s / (0.75 * s.sum()), 0)[:1])


def test_ssim_matches_an_independent_zero_padded_computation() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((12, 14)), rng.random((12, 14))
    window = gaussian_window().double().numpy()
    blur = lambda a: ndimage.correlate(a, window, mode="constant")  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    expected = (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()
    got = ssim_per_sample(torch.tensor(x).view(1, 1, 12, 14).float(), torch.tensor(y).view(1, 1, 12, 14).float())
    assert got.item() == pytest.approx(expected, abs=1e-5)
    assert ssim_per_sample(torch.tensor(x).view(1, 1, 12, 14).float(), torch.tensor(x).view(1, 1, 12, 14).float()).item() == pytest.approx(1.0, abs=1e-5)


def test_base_loss_composition() -> None:
    torch.manual_seed(0)
    vis, ir = torch.rand(2, 1, 16, 16) * 2 - 1, torch.rand(2, 1, 16, 16) * 2 - 1
    w = source_weights(ir=ir, vis=vis)
    loss = base_loss(vis.clone(), ir=ir, vis=vis)  # fused = visible: its SSIM/MSE terms vanish
    ssim_ir = ssim_per_sample(ir * 0.5 + 0.5, vis * 0.5 + 0.5)
    structure = (w.gradient_ir * (1 - ssim_ir)).mean()
    intensity = (w.entropy_ir * (vis - ir).pow(2).flatten(1).mean(1)).mean()
    torch.testing.assert_close(loss.structure, structure)
    torch.testing.assert_close(loss.intensity, intensity)
    torch.testing.assert_close(loss.total, 20 * structure + intensity)


def test_contrastive_ratio_by_hand() -> None:
    identity = lambda x: [x, 2 * x]  # noqa: E731  (a layer's scale cancels in its ratio)
    anchor, positive = torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
    negatives = [torch.ones(1, 1, 2, 2), -torch.ones(1, 1, 2, 2)]
    # near 0.5, far 1 + 1 -> 0.25 per layer; weights (1, 0.5)
    assert contrastive_ratio(identity, anchor, positive, negatives, (1.0, 0.5)).item() == pytest.approx(0.375)


def test_in_batch_shifts() -> None:
    assert in_batch_shifts(30) == (10, 20)
    assert in_batch_shifts(4) == (1, 2)
    assert in_batch_shifts(1) == (1, 1)


def test_coupled_contrastive_loss_terms_and_negatives() -> None:
    torch.manual_seed(0)
    fused = torch.rand(3, 1, 4, 4, requires_grad=True)
    vis, ir = torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    mask = torch.zeros(3, 1, 4, 4)
    mask[:, :, :2] = 1
    identity = lambda x: [x]  # noqa: E731
    loss = coupled_contrastive_loss(fused, ir=ir, vis=vis, mask=mask, features=identity, layer_weights=(1.0,))
    m, bg = mask, 1 - mask
    f = fused.detach()
    # anchor i's easy negatives are samples i - 1 and i - 2 (mod 3)
    fg = (f * m - ir * m).abs().mean() / sum((f * m - n * m).abs().mean() for n in (vis, vis.roll(1, 0), vis.roll(2, 0)))
    back = (f * bg - vis * bg).abs().mean() / sum((f * bg - n * bg).abs().mean() for n in (ir, ir.roll(1, 0), ir.roll(2, 0)))
    torch.testing.assert_close(loss.foreground.detach(), fg)
    torch.testing.assert_close(loss.background.detach(), back)
    loss.total.backward()
    assert torch.isfinite(fused.grad).all() and fused.grad.abs().sum() > 0


def test_empty_masks_are_skipped_without_nan() -> None:
    fused = torch.rand(2, 1, 4, 4, requires_grad=True)
    vis, ir = torch.rand(2, 1, 4, 4), torch.rand(2, 1, 4, 4)
    identity = lambda x: [x]  # noqa: E731
    empty = coupled_contrastive_loss(fused, ir=ir, vis=vis, mask=torch.zeros(2, 1, 4, 4), features=identity, layer_weights=(1.0,))
    assert empty.foreground.item() == 0 and torch.isfinite(empty.background)
    full = coupled_contrastive_loss(fused, ir=ir, vis=vis, mask=torch.ones(2, 1, 4, 4), features=identity, layer_weights=(1.0,))
    assert full.background.item() == 0 and torch.isfinite(full.foreground)
    partial = torch.zeros(2, 1, 4, 4)
    partial[1, :, 1:3, 1:3] = 1  # sample 0 has no foreground: left out of L_fg
    mixed = coupled_contrastive_loss(fused, ir=ir, vis=vis, mask=partial, features=identity, layer_weights=(1.0,))
    (mixed.total + empty.total + full.total).backward()
    assert torch.isfinite(mixed.total) and torch.isfinite(fused.grad).all()


def test_otsu_threshold_splits_two_modes() -> None:
    values = np.concatenate([np.full(100, 0.2), np.full(50, 0.8)])
    assert 0.2 < otsu_threshold(values) <= 0.8


def test_foreground_mask_finds_a_warm_square() -> None:
    image = np.full((64, 64), 0.2)
    image[20:32, 30:42] = 0.9
    mask = foreground_mask(image)
    target = np.zeros_like(mask)
    target[20:32, 30:42] = True
    assert (mask & target).sum() / (mask | target).sum() > 0.7
    assert not mask[:10].any() and not mask[:, :10].any()
    assert not foreground_mask(np.full((32, 32), 0.5)).any()  # flat: empty, no thresholded noise
    assert ir_saliency(np.full((8, 8), 0.5)).max() == 0


def test_mask_source_user_cache_and_computed(tmp_path) -> None:
    image = np.full((40, 40), 50, dtype=np.uint8)
    image[10:20, 10:20] = 240
    ir_path = tmp_path / "scene.png"
    Image.fromarray(image).save(ir_path)
    luma = image / 255.0

    cached = MaskSource(cache_dir=tmp_path / "cache")
    computed = cached.mask_for(ir_path, luma)
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].name.startswith("scene.") and files[0].name.endswith(f".{MASK_METHOD}.png")
    assert np.array_equal(read_mask(files[0]), computed) and computed[12:18, 12:18].all()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(files[0])  # a cached mask is read, not recomputed
    assert not cached.mask_for(ir_path, luma).any()

    user_dir = tmp_path / "user"
    user_dir.mkdir()
    user = np.zeros((40, 40), np.uint8)
    user[0:5, 0:5] = 1  # a 0/1 mask file
    Image.fromarray(user).save(user_dir / "scene.png")
    assert np.array_equal(MaskSource(user_dir, tmp_path / "cache").mask_for(ir_path, luma), user.astype(bool))
    with pytest.raises(ValueError, match="40x40"):
        MaskSource(user_dir).mask_for(ir_path, luma[:30])


# -- the local information measure (ours; docs/coconet.md) ---------------------------------------

def _half_textured(side: str, size: int = 32) -> torch.Tensor:
    """A patch on [-1, 1]: a flat grey half and a half of 4-px stripes, on the ``side`` given."""
    x = torch.zeros(1, 1, size, size)
    stripes = (torch.arange(size // 2) // 2 % 2).float() * 1.6 - 0.8
    columns = slice(0, size // 2) if side == "left" else slice(size // 2, size)
    x[..., columns] = stripes.view(1, -1).expand(size, -1)
    return x


def test_local_information_is_brightness_on_flat_patches_and_grows_with_edges() -> None:
    from contrafuse.losses.coconet import local_information

    flat = torch.full((1, 1, 16, 16), 0.2)  # 0.6 on [0, 1]
    assert torch.allclose(local_information(flat, brightness=1.0), torch.full_like(flat, 0.6), atol=1e-5)
    assert torch.allclose(local_information(flat, brightness=0.0), torch.zeros_like(flat), atol=1e-6)
    textured = local_information(_half_textured("left"), brightness=0.0)
    assert textured[..., 8:24, 4].mean() > 10 * textured[..., 8:24, 28].mean()


def test_local_measure_gives_each_source_the_pixels_where_it_holds_the_structure() -> None:
    ir, vis = _half_textured("right"), _half_textured("left")
    local = source_weights(ir=ir, vis=vis, gradient_temperature=0.25, entropy_temperature=0.25, measure="local",
                           brightness=0.0)
    assert local.gradient_vis.shape == (1, 1, 32, 32)  # per-pixel maps, not one weight per patch
    assert torch.allclose(local.gradient_vis + local.gradient_ir, torch.ones(1, 1, 32, 32))
    assert local.gradient_vis[..., 4].mean() > 0.95 and local.gradient_vis[..., 28].mean() < 0.05
    official = source_weights(ir=ir, vis=vis, measure="official")
    assert official.gradient_vis.shape == (1,)  # the released measure: one weight per patch
    assert official.gradient_vis.item() == pytest.approx(0.5, abs=1e-3)  # mirrored halves carry equal totals


def test_an_unknown_measure_is_refused() -> None:
    with pytest.raises(ValueError, match="measure must be one of"):
        source_weights(ir=torch.zeros(1, 1, 8, 8), vis=torch.zeros(1, 1, 8, 8), measure="vgg")
