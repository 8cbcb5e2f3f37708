"""Weights: the authors' pickles read without running code, safetensors round trip, convert."""
from __future__ import annotations

import os

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from contrafuse.cli.main import main
from contrafuse.errors import WeightsError
from contrafuse.models import create_model
from contrafuse.models.cs2fusion import CompensationPerceptionNet, Cs2Fusion, authors_cpn_state_to_ours
from contrafuse.models.weights import load_weights, read_reference_pickle, read_safetensors, save_weights


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_a_pickle_that_runs_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(2), "payload": _Exploit(marker)}, path)
    with pytest.raises(WeightsError, match=r"refusing to load.*system"):
        read_reference_pickle(path)
    assert not marker.exists()


def test_reads_plain_state_dict_pickles(tmp_path):
    model = Cs2Fusion()
    path = tmp_path / "state.pth"
    torch.save(model.state_dict(), path)
    state = read_reference_pickle(path)
    assert set(state) == set(model.state_dict())


def test_missing_and_unexpected_tensors_are_listed(tmp_path):
    state = Cs2Fusion().state_dict()
    state.pop("backbone.decoder.3.bias")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"missing \['backbone.decoder.3.bias'\]; unexpected \['extra.weight'\]"):
        load_weights(Cs2Fusion(), path)


def test_weights_of_another_registered_model_are_named_as_such(tmp_path):
    torch.manual_seed(0)
    coconet = create_model("coconet", weights=None).state_dict()
    torch.save(coconet, tmp_path / "coconet.pth")
    save_file({k: v.contiguous() for k, v in coconet.items()}, str(tmp_path / "coconet.safetensors"))  # no metadata
    for path in (tmp_path / "coconet.pth", tmp_path / "coconet.safetensors"):
        with pytest.raises(WeightsError) as caught:
            create_model("cs2fusion", weights=path)
        message = str(caught.value)
        assert "weights are for model 'coconet' or 'coconet-medical', not 'cs2fusion'" in message
        assert len(message) < 250 and "encoder" not in message  # no list of tensor names


def test_a_file_of_no_registered_model_gets_a_short_summary(tmp_path, capsys):
    torch.save(CompensationPerceptionNet().state_dict(), tmp_path / "cpn.pth")
    with pytest.raises(WeightsError, match=r"not weights of 'cs2fusion' nor of any registered model: its 4 tensors") as caught:
        create_model("cs2fusion", weights=tmp_path / "cpn.pth")
    assert str(caught.value).count("'") <= 12  # three names shown and one counted, not forty
    image = tmp_path / "a.png"
    torch.manual_seed(1)
    Image.fromarray((torch.rand(16, 16) * 255).byte().numpy()).save(image)
    assert main(["fuse", "--ir", str(image), "--vis", str(image), "--out", str(tmp_path / "f.png"),
                 "--weights", str(tmp_path / "cpn.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "any registered model" in err


def test_the_authors_backbone_given_to_coconet_is_named_cs2fusion(shared_dir):
    with pytest.raises(WeightsError, match=r"weights are for model 'cs2fusion', not 'coconet'"):
        create_model("coconet", weights=shared_dir / "reference/cs2fusion/weights/backbone.pth")
    with pytest.raises(WeightsError, match=r"cpn.pth: not weights of 'cs2fusion' nor of any registered model"):
        create_model("cs2fusion", weights=shared_dir / "reference/cs2fusion/weights/cpn.pth")


def test_safetensors_round_trip_and_model_check(tmp_path):
    torch.manual_seed(3)
    model = Cs2Fusion()
    path = save_weights(model, tmp_path / "w.safetensors", {"model": "cs2fusion"})
    copy = create_model("cs2fusion", weights=path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(copy.state_dict()[key], value, rtol=0, atol=0)
    with pytest.raises(WeightsError, match="not 'coconet'"):
        load_weights(torch.nn.Module(), path, model_name="coconet")


def test_not_a_weights_file(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"junk")
    with pytest.raises(WeightsError, match="junk.pth"):
        load_weights(Cs2Fusion(), path)


def test_authors_weights_load_and_convert(shared_dir, tmp_path):
    weights = shared_dir / "reference/cs2fusion/weights"
    backbone = read_reference_pickle(weights / "backbone.pth")
    assert len(backbone) == 36 and sum(v.numel() for v in backbone.values()) == 191_732
    cpn = CompensationPerceptionNet()
    load_weights(cpn, weights / "cpn.pth", foreign_state_filter=authors_cpn_state_to_ours)
    assert sum(p.numel() for p in cpn.parameters()) == 74_369

    target = tmp_path / "cs2fusion_authors.safetensors"
    assert main(["convert", str(weights / "backbone.pth"), str(target)]) == 0
    tensors, metadata = read_safetensors(target)
    assert metadata["model"] == "cs2fusion" and metadata["source"] == "backbone.pth"
    assert "input_convention" in metadata
    original = create_model("cs2fusion", weights=weights / "backbone.pth")
    converted = create_model("cs2fusion", weights=target)
    x = torch.rand(1, 1, 21, 17)
    with torch.inference_mode():
        torch.testing.assert_close(converted(ir=x, vis=x), original(ir=x, vis=x), rtol=0, atol=0)
    assert main(["convert", str(weights / "backbone.pth"), str(target)]) == 2  # no silent overwrite
