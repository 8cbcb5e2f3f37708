"""ONNX export: dynamic sizes, equality with PyTorch, metadata, clear refusals, the onnxruntime backend."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import require_module

onnx = require_module("onnx", "onnx")
ort = require_module("onnxruntime", "onnx")

from contrafuse import fuse  # noqa: E402
from contrafuse.cli.main import main  # noqa: E402
from contrafuse.errors import ContrafuseError  # noqa: E402
from contrafuse.export import ONNX_OPSET, ExportError, OnnxModel, export_onnx  # noqa: E402
from contrafuse.models import capabilities_of, create_model, list_models, model_info  # noqa: E402

SIZES = ((7, 13), (123, 77))


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """``export(name)``: a registered model with seeded random weights and its ONNX file, made once
    per name (the :class:`ExportError` in place of the file for a model that cannot be exported)."""
    made: dict[str, tuple[torch.nn.Module, Path | ExportError]] = {}
    folder = tmp_path_factory.mktemp("onnx")

    def export(name: str) -> tuple[torch.nn.Module, Path | ExportError]:
        if name not in made:
            torch.manual_seed(0)
            network = create_model(name, weights=None)
            try:
                made[name] = network, export_onnx(network, folder / f"{name}.onnx")
            except ExportError as exc:
                made[name] = network, exc
        return made[name]

    return export


@pytest.fixture(scope="module")
def cs2fusion(exports) -> tuple[torch.nn.Module, Path]:
    """CS2Fusion with random weights and its export."""
    return exports("cs2fusion")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", list_models())
def test_onnx_export_equals_pytorch_on_odd_sizes(exports, name, size):
    network, path = exports(name)
    if isinstance(path, ExportError):  # only rules without weights may depend on the size in Python
        assert not model_info(name).needs_weights and "cannot be exported with dynamic height and width" in str(path)
        return
    runner = OnnxModel(path)
    assert runner.size_multiple == capabilities_of(network).size_multiple
    generator = torch.Generator().manual_seed(sum(size))
    ir, vis = (torch.rand(2, 1, *size, generator=generator) for _ in range(2))  # batch of 2: dynamic too
    with torch.no_grad():
        expected = network(ir=ir, vis=vis)
    got = runner(ir=ir, vis=vis)
    assert got.shape == expected.shape == (2, 1, *size)
    assert (got - expected).abs().max().item() <= 1e-4


def test_model_options_reach_the_export_and_its_metadata(tmp_path: Path):
    torch.manual_seed(0)
    path = export_onnx("cs2fusion", tmp_path / "zeros.onnx", weights=None, model_options={"border": "zeros"})
    assert OnnxModel(path).metadata["contrafuse_model_options"] == "border=zeros"
    torch.manual_seed(0)  # the random weights export_onnx built
    zeros = create_model("cs2fusion", weights=None, border="zeros")
    ir, vis = (torch.rand(1, 1, 21, 30, generator=torch.Generator().manual_seed(seed)) for seed in (1, 2))
    with torch.no_grad():
        expected = zeros(ir=ir, vis=vis).numpy()
    np.testing.assert_allclose(OnnxModel(path)(ir=ir, vis=vis).numpy(), expected, atol=1e-4, rtol=0)


def test_gate_statistics_stay_dynamic(cs2fusion):
    """The DDM gates pool over the whole image: a constant image of another size must not reuse traced shapes."""
    network, path = cs2fusion
    model = OnnxModel(path)
    for size in ((5, 400), (300, 9)):
        ir = torch.linspace(0, 1, size[0] * size[1]).reshape(1, 1, *size)
        vis = ir.flip(-1)
        with torch.no_grad():
            np.testing.assert_allclose(model(ir=ir, vis=vis).numpy(), network(ir=ir, vis=vis).numpy(), atol=1e-4, rtol=0)


def test_metadata_states_model_convention_and_opset(tmp_path: Path):
    path = export_onnx("average", tmp_path / "average.onnx")
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["contrafuse_model"] == "average" and meta["opset"] == str(ONNX_OPSET)
    assert "[0, 1]" in meta["input_convention"] and "dynamic" in meta["input_convention"]
    assert any(o.version == ONNX_OPSET for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]


def test_laplacian_refuses_with_a_clear_reason(tmp_path: Path):
    """Its pyramid depth is computed in Python from the size: a traced graph cannot follow it."""
    out = tmp_path / "laplacian.onnx"
    with pytest.raises(ExportError, match=r"'laplacian' cannot be exported with dynamic height and width.*7x13"):
        export_onnx("laplacian", out)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_export_cli_then_fuse_with_onnxruntime_backend(tmp_path: Path, capsys):
    rng = np.random.default_rng(3)
    ir, vis = rng.integers(0, 256, (2, 37, 51), dtype=np.uint8)
    Image.fromarray(ir).save(tmp_path / "ir.png")
    Image.fromarray(vis).save(tmp_path / "vis.png")
    onnx_file = tmp_path / "average.onnx"
    assert main(["export", "--model", "average", "--format", "onnx", "--out", str(onnx_file)]) == 0
    assert main(["export", "--model", "average", "--out", str(onnx_file)]) == 2  # no silent overwrite
    assert "already exists" in capsys.readouterr().err
    out = tmp_path / "fused.png"
    assert main(["fuse", "--ir", str(tmp_path / "ir.png"), "--vis", str(tmp_path / "vis.png"), "--out", str(out),
                 "--backend", "onnxruntime", "--model", str(onnx_file)]) == 0
    expected = fuse(ir=tmp_path / "ir.png", vis=tmp_path / "vis.png", model="average", device="cpu")
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
    implied = tmp_path / "implied.png"  # no --backend: the .onnx suffix says onnxruntime
    assert main(["fuse", "--ir", str(tmp_path / "ir.png"), "--vis", str(tmp_path / "vis.png"), "--out", str(implied),
                 "--model", str(onnx_file)]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(implied)), expected)


def test_fuse_pipeline_accepts_an_onnx_file(cs2fusion, tmp_path: Path):
    network, path = cs2fusion
    rng = np.random.default_rng(4)
    ir, vis = rng.integers(0, 256, (2, 31, 45), dtype=np.uint8)
    via_onnx = fuse(ir=ir, vis=vis, model=str(path), device="cpu").astype(int)
    via_torch = fuse(ir=ir, vis=vis, model=network, device="cpu").astype(int)
    assert np.abs(via_onnx - via_torch).max() <= 1  # 1e-4 float differences can flip a rounding


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "onnxruntime", "--model", "average"], "backend onnxruntime cannot run average: it has no cached ONNX export"),
        (["--backend", "torch", "--model", "x.onnx"], "an ONNX file needs --backend onnxruntime"),
        (["--model", "missing.onnx"], "missing.onnx: ONNX model file not found"),  # the suffix implies onnxruntime
        (["--backend", "onnxruntime", "--model", "missing.onnx"], "missing.onnx: ONNX model file not found"),
    ],
)
def test_backend_errors_name_the_problem(tmp_path: Path, capsys, args, message):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    assert main(["fuse", "--ir", str(image), "--vis", str(image), "--out", str(tmp_path / "o.png"), *args]) == 2
    assert message in capsys.readouterr().err


def test_onnx_model_rejects_foreign_graphs(tmp_path: Path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(ContrafuseError, match="expected inputs"):
        OnnxModel(path)
