"""Folder fusion under torchrun: two gloo processes on the CPU give the files one process gives."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contrafuse.io import read_image, write_image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _pairs(folder: Path, count: int = 5) -> tuple[Path, Path]:
    """``count`` 72x56 crops of the example pair at different places, as two folders."""
    ir, vis = read_image(EXAMPLES / "ir.png"), read_image(EXAMPLES / "vis.png")
    for kind in ("ir", "vis"):
        (folder / kind).mkdir(parents=True)
    for index in range(count):
        top, left = 11 * index, 17 * index
        write_image(folder / "ir" / f"p{index}.png", ir[top:top + 56, left:left + 72])
        write_image(folder / "vis" / f"p{index}.png", vis[top:top + 56, left:left + 72])
    return folder / "ir", folder / "vis"


def _fuse(ir: Path, vis: Path, out: Path, *extra: str, processes: int = 1) -> subprocess.CompletedProcess:
    command = ["fuse", "--ir", str(ir), "--vis", str(vis), "--out", str(out), "--workers", "1", *extra]
    launcher = [sys.executable, "-m", "contrafuse"] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m", "contrafuse"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, *command], capture_output=True, text=True, env=env, timeout=600)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("model", ["cs2fusion"])
def test_two_processes_write_the_files_of_one_and_report_once(tmp_path: Path, model: str) -> None:
    ir, vis = _pairs(tmp_path / "in")
    single = _fuse(ir, vis, tmp_path / "one", "--model", model)
    assert single.returncode == 0, single.stderr
    shared = _fuse(ir, vis, tmp_path / "two", "--model", model, processes=2)
    assert shared.returncode == 0, shared.stderr
    assert _files(tmp_path / "two") == _files(tmp_path / "one") and len(_files(tmp_path / "one")) == 5
    summaries = [line for line in shared.stdout.splitlines() if line.startswith("fused ")]
    assert len(summaries) == 1 and summaries[0].startswith("fused 5 pair(s)") and "2 processes" in summaries[0]


def test_skip_existing_resumes_a_shared_run(tmp_path: Path) -> None:
    ir, vis = _pairs(tmp_path / "in")
    assert _fuse(ir, vis, tmp_path / "out", "--model", "average", processes=2).returncode == 0
    before = _files(tmp_path / "out")
    (tmp_path / "out" / "p3.png").unlink()
    resumed = _fuse(ir, vis, tmp_path / "out", "--model", "average", "--skip-existing", processes=2)
    assert resumed.returncode == 0, resumed.stderr
    assert "fused 1 pair(s)" in resumed.stdout and "4 skipped" in resumed.stdout
    assert _files(tmp_path / "out") == before


def _bench(ir: Path, vis: Path, out: Path, processes: int = 1) -> subprocess.CompletedProcess:
    command = ["bench", "--data", f"crops={ir},{vis}", "--models", "average,cs2fusion", "--out", str(out), "--no-plots",
               "--quiet", "--grid", "0"]
    launcher = [sys.executable, "-m", "contrafuse"] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", "-m", "contrafuse"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, *command], capture_output=True, text=True, env=env, timeout=600)


def _per_pair_values(out: Path) -> dict:
    import json

    record = json.loads((out / "metrics.json").read_text())
    return {dataset: {method: entry["images"] for method, entry in data["methods"].items()}
            for dataset, data in record["datasets"].items()}


def test_two_processes_bench_every_pair_once_and_report_what_one_reports(tmp_path: Path) -> None:
    ir, vis = _pairs(tmp_path / "in")
    single = _bench(ir, vis, tmp_path / "one")
    assert single.returncode == 0, single.stderr
    shared = _bench(ir, vis, tmp_path / "two", processes=2)
    assert shared.returncode == 0, shared.stderr
    for method in ("average", "cs2fusion"):
        one = {k: v for k, v in _files(tmp_path / "one" / "fused" / "crops" / method).items() if k.endswith(".png")}
        two = {k: v for k, v in _files(tmp_path / "two" / "fused" / "crops" / method).items() if k.endswith(".png")}
        assert one == two and len(one) == 5
    assert _per_pair_values(tmp_path / "two") == _per_pair_values(tmp_path / "one")
    assert shared.stdout.count("wrote ") == 1  # rank 0 alone writes the report
    again = _bench(ir, vis, tmp_path / "two", processes=2)  # the cache rank 0 saved holds every rank's values
    assert again.returncode == 0, again.stderr
    assert _per_pair_values(tmp_path / "two") == _per_pair_values(tmp_path / "one")
