"""The demo's runner (no browser, no Gradio) and the ``contrafuse demo`` command without Gradio."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT, require_module
from contrafuse.cli.main import main
from contrafuse.demo.runner import (
    REGION_WATCHES,
    TABLE_METRICS,
    Request,
    checkerboard,
    dataset_examples,
    find_examples,
    output_name,
    run_request,
)
from contrafuse.errors import ContrafuseError
from contrafuse.io import read_image

EXAMPLES = REPO_ROOT / "examples"


def cli_fuse(tmp_path: Path, *, ir: Path, vis: Path, model: str, extra: tuple[str, ...] = ()) -> bytes:
    """The bytes ``contrafuse fuse`` writes for the pair."""
    out = tmp_path / f"cli-{Path(model).stem}-{ir.stem}-{vis.stem}.png"
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(out), "--model", model, *extra]) == 0
    return out.read_bytes()


def test_results_are_the_bytes_contrafuse_fuse_writes(tmp_path: Path):
    request = Request(EXAMPLES / "ir.png", EXAMPLES / "vis.png", ("average", "laplacian"), gamut="clip")
    result = run_request(request, tmp_path / "run")
    assert [r.model for r in result.results] == ["average", "laplacian"]
    for entry in result.results:
        assert entry.fused.name == f"vis-{entry.model}.png"
        assert entry.fused.read_bytes() == cli_fuse(tmp_path, ir=request.ir, vis=request.vis, model=entry.model,
                                                    extra=("--gamut", "clip"))
        assert list(entry.values) == [*TABLE_METRICS, *REGION_WATCHES]
    headers, rows = result.table()
    assert headers[0] == "model" and headers[1] == "EN ↑" and headers[-1] == "OUT25 ↓"
    assert [row[0] for row in rows] == ["average", "laplacian"] and len(rows[0]) == len(headers)
    assert result.registration is None and result.checkerboard is None
    assert read_image(result.vis_preview).shape == (240, 320, 3)


def test_sixteen_bit_inputs_give_the_sixteen_bit_file_of_the_cli(tmp_path: Path):
    ir16 = (read_image(EXAMPLES / "ir.png").astype(np.uint16) * 257)
    Image.fromarray(ir16.astype("<u2")).save(tmp_path / "ir16.png")
    vis_gray = np.asarray(Image.open(EXAMPLES / "vis.png").convert("L"), dtype=np.uint16) * 257
    Image.fromarray(vis_gray.astype("<u2")).save(tmp_path / "vis16.png")
    request = Request(tmp_path / "ir16.png", tmp_path / "vis16.png", ("laplacian",))
    fused = run_request(request, tmp_path / "run").results[0].fused
    assert read_image(fused).dtype == np.uint16
    assert fused.read_bytes() == cli_fuse(tmp_path, ir=request.ir, vis=request.vis, model="laplacian")


def test_an_aligned_pair_has_its_confidence_and_a_checkerboard(tmp_path: Path):
    request = Request(EXAMPLES / "ir.png", EXAMPLES / "vis.png", ("average", "laplacian"), align="affine")
    result = run_request(request, tmp_path / "run")
    assert 0.25 <= result.registration.confidence <= 1
    assert read_image(result.checkerboard).shape == (240, 320, 3)
    for entry in result.results:  # the transform estimated once serves every model, as --align would per run
        assert entry.fused.read_bytes() == cli_fuse(tmp_path, ir=request.ir, vis=request.vis, model=entry.model,
                                                    extra=("--align", "affine"))


def test_checkerboard_alternates_tiles():
    first, second = np.zeros((4, 6), np.uint8), np.full((4, 6), 9, np.uint8)
    board = checkerboard(first, second, tiles=3)  # 2-pixel squares
    assert board[0, 0] == 0 and board[0, 2] == 9 and board[2, 0] == 9 and board[2, 2] == 0
    with pytest.raises(ValueError):
        checkerboard(first, second[:2])


def _message(request: Request, tmp_path: Path) -> str:
    with pytest.raises(ContrafuseError) as caught:
        run_request(request, tmp_path / "run")
    return str(caught.value)


def test_bad_inputs_get_the_cli_messages_naming_the_uploaded_files(tmp_path: Path, monkeypatch):
    upload = tmp_path / "upload-cache" / "a1b2"
    upload.mkdir(parents=True)
    corrupt = upload / "thermal.png"
    corrupt.write_bytes(b"this is not an image" * 20)
    message = _message(Request(corrupt, EXAMPLES / "vis.png", ("average",)), tmp_path)
    assert message.startswith("thermal.png: ") and "corrupt" in message and str(upload) not in message

    small = upload / "small.png"
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(small)
    message = _message(Request(small, EXAMPLES / "vis.png", ("average",)), tmp_path)
    assert message.startswith("sizes differ: small.png is 12x10, vis.png is 320x240") and "--align" in message

    monkeypatch.setenv("CONTRAFUSE_MAX_IMAGE_PIXELS", "1000")
    message = _message(Request(EXAMPLES / "ir.png", EXAMPLES / "vis.png", ("average",)), tmp_path)
    assert "ir.png: 320x240 pixels is more than the 1,000 allowed (a decompression bomb?)" in message
    monkeypatch.delenv("CONTRAFUSE_MAX_IMAGE_PIXELS")

    message = _message(Request(EXAMPLES / "ir.png", EXAMPLES / "vis.png", ("coconet-medical",), task="ivif"), tmp_path)
    assert "model coconet-medical fuses medical pairs, this is a infrared-visible pair" in message
    assert "no-such-model" in _message(Request(EXAMPLES / "ir.png", EXAMPLES / "vis.png", ("no-such-model",)), tmp_path)
    message = _message(Request(EXAMPLES / "ir.png", EXAMPLES / "vis.png", ("average",), ir_range="x"), tmp_path)
    assert message.startswith("infrared range 'x': use auto, full")
    twice = _message(Request(EXAMPLES / "ir.png", EXAMPLES / "vis.png", ("average", str(upload / "average.onnx"))), tmp_path)
    assert twice.startswith("two models are named average")
    assert "at least one model" in _message(Request(EXAMPLES / "ir.png", EXAMPLES / "vis.png", ()), tmp_path)


def test_output_names_are_plain_file_names():
    assert output_name("vis.png", "cs2fusion") == "vis-cs2fusion.png"
    assert output_name("my scan (1).tif", "/tmp/x/m int8.onnx") == "my_scan_1_-m_int8.png"


def test_examples_hold_the_shipped_pair_and_dataset_pairs(shared_dir: Path):
    examples = find_examples(shared_dir / "data")
    assert examples[0].label == "examples: ir.png + vis.png" and examples[0].ir == EXAMPLES / "ir.png"
    found = dataset_examples(shared_dir / "data")
    assert found and all(e.ir.is_file() and e.vis.is_file() for e in found)
    assert {e.task for e in found} == {"ivif", "medical"}
    assert dataset_examples(shared_dir / "no-such-root") == []


def test_demo_without_gradio_says_how_to_install_the_extra(monkeypatch, capsys):
    from contrafuse.demo.app import OFFLINE_ENVIRONMENT

    for name in (*OFFLINE_ENVIRONMENT, "GRADIO_TEMP_DIR"):  # restored after the test
        monkeypatch.setenv(name, "unset-by-test")
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    assert main(["demo", "--port", "7999"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("contrafuse: error: the demo page needs Gradio") and "pip install 'contrafuse[demo]'" in err


def test_demo_options_are_checked_before_anything_starts(capsys):
    assert main(["demo", "--port", "0"]) == 2
    assert "--port must be 1..65535" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--max-upload-mb" in capsys.readouterr().out


def test_an_exported_onnx_file_is_a_model_like_the_others(tmp_path: Path, capsys):
    require_module("onnxruntime", "onnx")
    exported = tmp_path / "upload" / "average.onnx"
    exported.parent.mkdir()
    assert main(["export", "--model", "average", "--format", "onnx", "--out", str(exported)]) == 0
    request = Request(EXAMPLES / "ir.png", EXAMPLES / "vis.png", ("laplacian", str(exported)))
    result = run_request(request, tmp_path / "run")
    assert [r.model for r in result.results] == ["laplacian", "average"]
    assert result.results[1].fused.name == "vis-average.png"
    assert result.results[1].fused.read_bytes() == cli_fuse(
        tmp_path, ir=request.ir, vis=request.vis, model=str(exported), extra=("--backend", "onnxruntime"))


def test_the_command_line_starts_without_importing_gradio():
    import subprocess

    code = "import sys; from contrafuse.cli.main import build_parser; build_parser(); print('gradio' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr[-2000:]
