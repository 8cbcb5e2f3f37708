"""Batching, parallel workers and reduced precision: same bytes at fp32, close at bf16/fp16, clear refusals."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import contrafuse
from contrafuse.cli.main import main
from contrafuse.fusion import FuseOptions, fuse_arrays
from contrafuse.session import Fuser
from contrafuse.io import read_image
from contrafuse.models import create_model
from contrafuse.runtime import ModelRunner, PrecisionError, parallel_layout

SIZES = [(256, 256), (257, 256), (256, 256), (40, 56)]  # two sizes that batch, one too small to


def _scene(h, w, seed):
    """A smooth scene with edges and noise: closer to a photograph than uniform noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = 120 + 80 * np.sin(xx / (3 + seed)) * np.cos(yy / 5.0) + 40 * (xx > w // 2) + rng.normal(0, 6, (h, w))
    return base.clip(0, 255).astype(np.uint8)


def _folders(tmp_path, sizes=SIZES):
    ir, vis = tmp_path / "ir", tmp_path / "vis"
    ir.mkdir()
    vis.mkdir()
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(_scene(h, w, i)).save(ir / f"p{i}.png")
        rgb = np.stack([_scene(h, w, i + 10), _scene(h, w, i + 20), _scene(h, w, i + 30)], -1)
        Image.fromarray(rgb).save(vis / f"p{i}.png")
    return ir, vis


@pytest.fixture(scope="module")
def shipped():
    return {name: create_model(name) for name in ("cs2fusion", "coconet")}


@pytest.mark.parametrize("name", ["cs2fusion", "coconet"])
def test_batched_parallel_folder_run_writes_the_same_bytes_as_one_at_a_time(tmp_path, shipped, name):
    """The default workers: two for CS2Fusion (thread-count invariant), one for CoCoNet."""
    ir, vis = _folders(tmp_path)
    model = shipped[name]
    sequential = contrafuse.fuse_folders(ir=ir, vis=vis, out=tmp_path / "one", model=model, device="cpu",
                                         batch_size=1, workers=1, progress=False)
    batched = contrafuse.fuse_folders(ir=ir, vis=vis, out=tmp_path / "many", model=model, device="cpu",
                                      batch_size=3, progress=False)
    assert sequential.ok and batched.ok and len(batched.written) == len(SIZES)
    for path in sequential.written:
        assert (tmp_path / "many" / path.name).read_bytes() == path.read_bytes(), path.name
    assert [p.name for p in batched.written] == [f"p{i}.png" for i in range(len(SIZES))]  # pair order
    assert all(read_image(p).shape[:2] == SIZES[i] for i, p in enumerate(batched.written))
    assert batched.pairs_per_second > 0 and "batch size 3" in batched.setup
    # and the pipeline's sequential run is the plain per-pair path
    first = sequential.written[-1]
    expected = fuse_arrays(model, ir=read_image(ir / first.name), vis=read_image(vis / first.name))
    np.testing.assert_array_equal(read_image(first), expected)


def test_worker_threads_are_restored(tmp_path, shipped):
    ir, vis = _folders(tmp_path, [(40, 56)] * 2)
    before = torch.get_num_threads()
    contrafuse.fuse_folders(ir=ir, vis=vis, out=tmp_path / "out", model=shipped["cs2fusion"], device="cpu",
                            workers=2, progress=False)
    assert torch.get_num_threads() == before


def test_parallel_layout_uses_workers_only_where_results_cannot_change(shipped):
    class Plain(torch.nn.Module):
        def forward(self, *, ir, vis):
            return ir

    cpu = torch.device("cpu")
    threads = torch.get_num_threads()
    workers, per_worker = parallel_layout(ModelRunner(shipped["cs2fusion"], device=cpu))
    assert workers == (2 if threads >= 2 else 1) and per_worker == max(1, threads // workers)
    assert parallel_layout(ModelRunner(Plain(), device=cpu))[0] == 1
    assert parallel_layout(ModelRunner(shipped["coconet"], device=cpu))[0] == 1
    assert parallel_layout(ModelRunner(shipped["cs2fusion"], device=cpu), workers=64)[0] == threads


@pytest.mark.parametrize("precision, max_mean, max_max", [("bf16", 1.5, 12), ("fp16", 0.3, 3)])
@pytest.mark.parametrize("name", ["cs2fusion", "coconet"])
def test_reduced_precision_runs_on_cpu_close_to_fp32(shipped, name, precision, max_mean, max_max):
    """The GPU path (autocast) tested here: bf16 has 8 bits of mantissa, fp16 11."""
    ir, vis = _scene(48, 64, 1), _scene(48, 64, 2)
    model = shipped[name]
    full = fuse_arrays(model, ir=ir, vis=vis).astype(int)
    reduced = fuse_arrays(model, ir=ir, vis=vis, options=FuseOptions(precision=precision)).astype(int)
    difference = np.abs(reduced - full)
    assert difference.mean() <= max_mean and difference.max() <= max_max, (difference.mean(), difference.max())
    assert Fuser(model, device="cpu", precision=precision).describe().startswith(precision)


def test_int8_with_the_torch_backend_says_how_to_get_it(shipped):
    with pytest.raises(PrecisionError, match=r"contrafuse export --model NAME --precision int8"):
        fuse_arrays(shipped["cs2fusion"], ir=_scene(8, 8, 0), vis=_scene(8, 8, 1), options=FuseOptions(precision="int8"))
    with pytest.raises(PrecisionError, match="precision must be one of fp32, fp16, bf16, int8"):
        FuseOptions(precision="fp64")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        FuseOptions(batch_size=0)


def test_cli_folder_run_prints_speed_and_setup(tmp_path, capsys):
    ir, vis = _folders(tmp_path, [(40, 56)] * 3)
    out = tmp_path / "out"
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(out), "--batch-size", "2",
                 "--precision", "bf16"]) == 0
    printed = capsys.readouterr().out
    assert "fused 3 pair(s)" in printed and "pairs/s" in printed and "bf16, torch" in printed and "batch size 2" in printed
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(tmp_path / "o2"), "--precision", "int8"]) == 2
    assert "contrafuse export" in capsys.readouterr().err
    assert main(["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(tmp_path / "o3"), "--batch-size", "0"]) == 2
