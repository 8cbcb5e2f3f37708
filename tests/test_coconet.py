"""CoCoNet network and VGG: parameter counts, any-size forward, exact tiling, VGG loading."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from contrafuse.errors import WeightsError
from contrafuse.models import create_model, list_models, model_info
from contrafuse.models import _coconet_fast as fast_module
from contrafuse.models.coconet import (
    OFFICIAL_DEAD_PARAMETERS,
    OFFICIAL_FROZEN_PARAMETERS,
    OFFICIAL_PARAMETERS,
    ChannelAttention,
    CoCoNet,
    from_network_output,
    parameter_counts,
    to_network_input,
)
from contrafuse.models.padding import pad_to_multiple, reflect_indices
from contrafuse.models.vgg import (
    GRAY_FROM_RGB,
    VGG19_LENGTH,
    VGGLossFeatures,
    VGGTrunk,
    conv_shapes,
    random_vgg19_state,
    read_vgg19_state,
    vgg_source_description,
)
from contrafuse.models.weights import load_weights, save_weights


@pytest.fixture(scope="module")
def lively_model() -> CoCoNet:
    """A random CoCoNet whose output actually varies: non-zero attention gains, random BN
    statistics (some negative scales) and a larger head, so equality checks have teeth."""
    torch.manual_seed(0)
    model = CoCoNet().eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for ensemble in model.backbone.ensembles:
            ensemble.attention.gamma.fill_(0.8)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(-1.5, 1.5, generator=generator)
        model.backbone.head.weight.mul_(40.0)
    return model


def test_parameter_counts_match_the_official_layout_minus_dead_layers() -> None:
    counts = parameter_counts(CoCoNet())
    # official Unet_resize_conv: 9,169,605 with the frozen VGG trunk; its se_32 (27,745) and
    # att_deconv9 (27,680) are never used and are left out here.
    assert OFFICIAL_DEAD_PARAMETERS == (3 * (9 * 32 * 32 + 32) + 1) + (96 * 32 * 9 + 32)
    assert counts["total"] == OFFICIAL_PARAMETERS - OFFICIAL_DEAD_PARAMETERS == 9_114_180
    assert counts["frozen"] == OFFICIAL_FROZEN_PARAMETERS == 2_324_416
    assert counts["trainable"] == 6_845_189 - OFFICIAL_DEAD_PARAMETERS
    for channels in (64, 128, 256):
        assert sum(p.numel() for p in ChannelAttention(channels).parameters()) == 3 * (9 * channels**2 + channels) + 1


def test_registered_models() -> None:
    assert {"coconet", "coconet-medical"} <= set(list_models("coconet*"))
    assert model_info("coconet").default_weights == "coconet.safetensors"
    assert model_info("coconet-medical").task == "medical"
    assert model_info("coconet-medical").default_weights == "coconet-medical.safetensors"
    assert isinstance(create_model("coconet-medical", weights=None), CoCoNet)


def test_reflect_indices_equal_reflection_padding_and_extend_it() -> None:
    x = torch.arange(35.0).view(1, 1, 5, 7)
    assert torch.equal(x.index_select(-1, reflect_indices(7, 3, 4)), F.pad(x, (3, 4, 0, 0), mode="reflect"))
    assert reflect_indices(3, 5, 5).tolist() == [1, 0, 1, 2, 1, 0, 1, 2, 1, 0, 1, 2, 1]  # reflecting in steps
    assert reflect_indices(1, 3, 4).tolist() == [0] * 8  # a side of 1 is replicated
    padded, box = pad_to_multiple(torch.rand(1, 1, 7, 13), 8)
    assert padded.shape[-2:] == (8, 16) and box == (0, 1, 7, 13)


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (123, 77)])
def test_forward_on_odd_sizes(lively_model: CoCoNet, size: tuple[int, int]) -> None:
    ir, vis = torch.rand(1, 1, *size), torch.rand(1, 1, *size)
    with torch.inference_mode():
        out = lively_model(ir=ir, vis=vis)
        fast = lively_model.fuse(ir=ir, vis=vis)
    assert out.shape == (1, 1, *size)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(fast, out, rtol=0, atol=2e-5)  # the fast inference path is the plain forward


def test_single_image_fast_path_equals_batched_path(lively_model: CoCoNet) -> None:
    ir, vis = torch.rand(2, 1, 24, 40), torch.rand(2, 1, 24, 40)
    with torch.inference_mode():
        batched = lively_model.fuse(ir=ir, vis=vis)  # B = 2: attention matmuls
        single = torch.cat([lively_model.fuse(ir=ir[i : i + 1], vis=vis[i : i + 1]) for i in range(2)])  # folded into the merge conv
        plain = lively_model(ir=ir, vis=vis)
    assert batched.std() > 1e-2
    torch.testing.assert_close(single, batched, rtol=0, atol=2e-5)
    torch.testing.assert_close(batched, plain, rtol=0, atol=2e-5)


def test_tiled_forward_equals_whole_image_forward(lively_model: CoCoNet) -> None:
    ir, vis = torch.rand(1, 1, 21, 512), torch.rand(1, 1, 21, 512)  # windows 256, 384, 384, 256 wide
    with torch.inference_mode():
        whole = lively_model(ir=ir, vis=vis)
        a, b, box = to_network_input(ir=ir, vis=vis)
        tiled = from_network_output(fast_module.tiled_forward(lively_model.backbone, ir=a, vis=b, tile=128), box)
        # attention from each half alone instead of the whole image is visibly different
        halves = torch.cat([lively_model(ir=ir[..., :256], vis=vis[..., :256]), lively_model(ir=ir[..., 256:], vis=vis[..., 256:])], -1)
    assert whole.std() > 1e-2
    torch.testing.assert_close(tiled, whole, rtol=0, atol=2e-5)
    assert (halves - whole).abs().max() > 1e-3


def test_wide_image_goes_through_the_tiled_path(lively_model: CoCoNet, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = fast_module.tiled_forward

    def spy(*args, **kwargs):
        calls.append(kwargs["ir"].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(fast_module, "tiled_forward", spy)
    ir, vis = torch.rand(1, 1, 24, 2300), torch.rand(1, 1, 24, 2300)
    with torch.inference_mode():
        fused = lively_model.fuse(ir=ir, vis=vis, tile=1024)
    assert calls == [(1, 1, 24, 2304)]  # padded to a multiple of 8, then tiled
    assert fused.shape == (1, 1, 24, 2300)
    assert torch.isfinite(fused).all() and fused.std() > 1e-2


def _torchvision_vgg19_state(seed: int = 3) -> dict[str, torch.Tensor]:
    """A random state dict with torchvision vgg19's keys and shapes (RGB first conv, classifier)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for index, (cin, cout) in conv_shapes(VGG19_LENGTH, in_channels=3).items():
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=generator) * 0.05
        state[f"features.{index}.bias"] = torch.randn(cout, generator=generator) * 0.01
    state["classifier.0.weight"] = torch.zeros(8, 8)  # ignored (the real one is 4096 x 25088)
    return state


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchvision_vgg19_file_loads_with_gray_first_conv(tmp_path, suffix: str) -> None:
    state = _torchvision_vgg19_state()
    path = tmp_path / f"vgg19{suffix}"
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    gray = (state["features.0.weight"] * torch.tensor(GRAY_FROM_RGB).view(1, 3, 1, 1)).sum(1, keepdim=True)

    trunk = VGGTrunk(path)
    torch.testing.assert_close(trunk.features[0].weight, gray)
    torch.testing.assert_close(trunk.features[16].weight, state["features.16.weight"])
    assert not any(p.requires_grad for p in trunk.parameters())
    model = CoCoNet(vgg_weights=path)
    torch.testing.assert_close(model.backbone.vgg.features[10].bias, state["features.10.bias"])
    loss_features = VGGLossFeatures(path)
    torch.testing.assert_close(loss_features.features[28].weight, state["features.28.weight"])
    taps = loss_features(torch.rand(1, 1, 32, 32))
    assert [t.shape[1:] for t in taps] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]
    assert vgg_source_description(path).startswith(f"file=vgg19{suffix} sha256=")


def test_vgg_file_errors(tmp_path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        read_vgg19_state(tmp_path / "missing.pth", 18)
    partial = {k: v for k, v in _torchvision_vgg19_state().items() if k != "features.14.weight"}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="features.14.weight"):
        read_vgg19_state(tmp_path / "partial.pth", 18)
    assert set(read_vgg19_state(tmp_path / "partial.pth", 14)) == {f"features.{i}.{leaf}" for i in (0, 2, 5, 7, 10, 12) for leaf in ("weight", "bias")}


def test_random_vgg_is_seeded_kaiming_normal_fan_out() -> None:
    first, again, other = random_vgg19_state(30, seed=0), random_vgg19_state(30, seed=0), random_vgg19_state(30, seed=1)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["features.28.weight"], other["features.28.weight"])
    assert all(torch.equal(first[k], random_vgg19_state(18)[k]) for k in random_vgg19_state(18))  # same prefix
    weight = first["features.21.weight"]  # 512 -> 512: std sqrt(2 / fan_out) = sqrt(2 / (512 * 9))
    assert abs(weight.std().item() / (2 / (512 * 9)) ** 0.5 - 1) < 0.01
    assert all(first[k].abs().sum() == 0 for k in first if k.endswith("bias"))
    assert torch.equal(VGGTrunk().features[7].weight, first["features.7.weight"])


def test_weights_round_trip(tmp_path, lively_model: CoCoNet) -> None:
    path = save_weights(lively_model, tmp_path / "coconet.safetensors", {"model": "coconet", "vgg": "random seed=0"})
    fresh = CoCoNet(vgg_seed=5).eval()
    metadata = load_weights(fresh, path, model_name="coconet")
    assert metadata["vgg"] == "random seed=0"
    ir, vis = torch.rand(1, 1, 16, 24), torch.rand(1, 1, 16, 24)
    with torch.inference_mode():
        torch.testing.assert_close(fresh(ir=ir, vis=vis), lively_model(ir=ir, vis=vis), rtol=0, atol=0)
