"""Failure corpus: what every kind of bad input, hostile file and failing disk does to contrafuse.

Each case runs a command as a user would (``contrafuse ...`` through ``cli.main.main``) and
asserts the whole contract: the exit status, one message naming the file and the problem, no
Python traceback, every input and earlier output unchanged (checksums), and no partial or
temporary file left anywhere under the case's folder.
"""
from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from contrafuse.cli.main import main
from contrafuse.models import create_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


# -- the contract ------------------------------------------------------------------------------

def checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[Path]:
    """Temporary files of an atomic write (or anything that looks like one)."""
    return [p for p in folder.rglob("*") if ".partial" in p.name or p.name.endswith((".tmp", ".temp"))]


@dataclass
class Outcome:
    status: int
    out: str
    err: str


def run(args: list[str], capsys: pytest.CaptureFixture) -> Outcome:
    status = main([str(a) for a in args])
    captured = capsys.readouterr()
    return Outcome(status, captured.out, captured.err)


def assert_refused(outcome: Outcome, status: int, *needles: str) -> None:
    """The status, no traceback, and one error line that holds every needle."""
    assert outcome.status == status, (outcome.status, outcome.err)
    assert "Traceback" not in outcome.err and "Traceback" not in outcome.out
    lines = [line for line in outcome.err.splitlines() if "error" in line]
    assert lines, outcome.err
    assert any(all(n in line for n in needles) for line in lines), (needles, outcome.err)


def assert_untouched(folder: Path, before: dict[str, str], created: tuple[str, ...] = ()) -> None:
    after = checksums(folder)
    assert {k: v for k, v in after.items() if k not in created} == before
    assert not leftovers(folder)


# -- inputs ------------------------------------------------------------------------------------

def pair(folder: Path, size: tuple[int, int] = (24, 32)) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    ir, vis = folder / "ir.png", folder / "vis.png"
    Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(ir)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(vis)
    return ir, vis


class StorageRef:
    """Pickles as the persistent record of a torch.save storage."""

    def __init__(self, key: str, numel: int, kind: type = torch.FloatStorage) -> None:
        self.key, self.numel, self.kind = key, numel, kind


class TensorRecord:
    """Pickles as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``."""

    def __init__(self, storage: StorageRef, size: tuple, stride: tuple, offset: int = 0) -> None:
        self.storage, self.size, self.stride, self.offset = storage, size, stride, offset

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict())


class ModuleRecord:
    """Pickles as an ``nn.Module`` (a class torch's loader knows) with the given state."""

    def __init__(self, parameters: dict, children: dict | None = None) -> None:
        self.parameters, self.children = parameters, children or {}

    def __reduce__(self):
        state = {"_parameters": collections.OrderedDict(self.parameters), "_buffers": collections.OrderedDict(),
                 "_modules": collections.OrderedDict(self.children)}
        return torch.nn.Linear, (), state


class Hostile:
    """Pickles as a call of ``os.system``: loading it must never run it."""

    def __reduce__(self):
        return os.system, ("touch HACKED",)


class _ArchivePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            return "storage", obj.kind, obj.key, "cpu", obj.numel
        return None


def torch_archive(path: Path, root: object, storages: dict[str, bytes], deflate: bool = False) -> Path:
    """A ``torch.save``-layout zip with ``root`` pickled as data.pkl and the given storage entries."""
    buffer = io.BytesIO()
    _ArchivePickler(buffer, protocol=2).dump(root)
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)
    return path


def fuse_with_weights(ir: Path, vis: Path, weights: Path, out: Path) -> list[str]:
    return ["fuse", "--ir", ir, "--vis", vis, "--out", out, "--model", "cs2fusion", "--weights", weights]


# -- usage mistakes ------------------------------------------------------------------------------

USAGE = {
    "mistyped model": (["--model", "cs2fusoin"], "unknown model 'cs2fusoin'"),
    "unknown device": (["--device", "foo"], "unknown device 'foo'"),
    "cuda without a gpu": (["--device", "cuda:7"], "cuda:7"),
    "onnx backend for a model without an export": (["--backend", "onnxruntime"], "backend onnxruntime cannot run average: it has no cached ONNX export"),
}


@pytest.mark.parametrize("case", sorted(USAGE))
def test_usage_mistakes(case, tmp_path, capsys):
    ir, vis = pair(tmp_path)
    before = checksums(tmp_path)
    extra, message = USAGE[case]
    outcome = run(["fuse", "--ir", ir, "--vis", vis, "--out", tmp_path / "out.png", "--model", "average", *extra], capsys)
    assert_refused(outcome, 2, message)
    assert_untouched(tmp_path, before)


# -- bad images --------------------------------------------------------------------------------

def truncated(folder: Path) -> Path:
    path = folder / "cut.png"
    full = io.BytesIO()
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(full, format="PNG")
    path.write_bytes(full.getvalue()[:60])
    return path


def bomb(folder: Path) -> Path:
    """A small file declaring 25000 x 25000 pixels: Pillow's bomb limit refuses it unread."""
    path = folder / "bomb.png"
    Image.new("1", (25000, 25000)).save(path)
    return path


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def folder_named(path: Path) -> Path:
    path.mkdir()
    return path


BAD_IMAGES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "missing": (lambda folder: folder / "nope.png", "file not found"),
    "empty": (lambda folder: written(folder / "empty.png", b""), "file is empty"),
    "not an image": (lambda folder: written(folder / "notes.png", b"hello"), "not a readable image"),
    "truncated": (truncated, "cannot decode"),
    "a folder": (lambda folder: folder_named(folder / "dir.png"), "give two files or two folders"),
    "decompression bomb": (bomb, "decompression bomb"),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_a_bad_input_image_is_named(case, tmp_path, capsys):
    _, vis = pair(tmp_path)
    make, problem = BAD_IMAGES[case]
    bad = make(tmp_path)
    before = checksums(tmp_path)
    outcome = run(["fuse", "--ir", bad, "--vis", vis, "--out", tmp_path / "out.png", "--model", "average"], capsys)
    assert_refused(outcome, 2, bad.name, problem)
    assert_untouched(tmp_path, before)


def test_a_bomb_in_a_folder_fails_that_pair_only(tmp_path, capsys):
    for name in ("a", "b"):
        pair(tmp_path / name)
    (tmp_path / "ir").mkdir(), (tmp_path / "vis").mkdir()
    for name in ("a", "b"):
        (tmp_path / name / "ir.png").rename(tmp_path / "ir" / f"{name}.png")
        (tmp_path / name / "vis.png").rename(tmp_path / "vis" / f"{name}.png")
    bomb(tmp_path / "ir").rename(tmp_path / "ir" / "c.png")
    pair(tmp_path / "c")
    (tmp_path / "c" / "vis.png").rename(tmp_path / "vis" / "c.png")
    before = checksums(tmp_path)
    outcome = run(["fuse", "--ir", tmp_path / "ir", "--vis", tmp_path / "vis", "--out", tmp_path / "out", "--model", "average"], capsys)
    assert outcome.status == 1 and "Traceback" not in outcome.err
    assert "c.png" in outcome.err and "decompression bomb" in outcome.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    assert_untouched(tmp_path, before, created=("out/a.png", "out/b.png"))


def test_the_pixel_limit_can_be_raised(tmp_path, monkeypatch, capsys):
    ir, vis = pair(tmp_path)
    monkeypatch.setenv("CONTRAFUSE_MAX_IMAGE_PIXELS", "100")
    outcome = run(["fuse", "--ir", ir, "--vis", vis, "--out", tmp_path / "out.png", "--model", "average"], capsys)
    assert_refused(outcome, 2, "ir.png", "CONTRAFUSE_MAX_IMAGE_PIXELS")
    monkeypatch.setenv("CONTRAFUSE_MAX_IMAGE_PIXELS", "100000")
    assert run(["fuse", "--ir", ir, "--vis", vis, "--out", tmp_path / "out.png", "--model", "average"], capsys).status == 0


def test_exif_orientation_is_applied_as_displayed(tmp_path, capsys):
    """A phone JPEG stored sideways with orientation 6 (rotate 90 degrees clockwise to display)."""
    rng = np.random.default_rng(1)
    displayed = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    stored = np.rot90(displayed, k=1)  # what the sensor wrote: displayed rotated back
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.ascontiguousarray(stored)).save(tmp_path / "phone.jpg", exif=exif, quality=100)
    Image.fromarray(displayed[..., 0]).save(tmp_path / "ir.png")
    out = tmp_path / "fused.png"
    outcome = run(["fuse", "--ir", tmp_path / "ir.png", "--vis", tmp_path / "phone.jpg", "--out", out, "--model", "average"], capsys)
    assert outcome.status == 0, outcome.err
    fused = np.asarray(Image.open(out))
    assert fused.shape == (30, 40, 3)
    vis = np.asarray(Image.open(tmp_path / "phone.jpg").transpose(Image.Transpose.ROTATE_270)).astype(float)
    assert np.abs(fused.astype(float) - vis).mean() < np.abs(fused.astype(float) - np.rot90(vis, 2)).mean()


def test_a_multi_frame_input_is_named_in_one_warning(tmp_path, capsys):
    frames = [Image.fromarray(np.full((24, 32), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    _, vis = pair(tmp_path)
    outcome = run(["fuse", "--ir", tmp_path / "anim.gif", "--vis", vis, "--out", tmp_path / "o.png", "--model", "average"], capsys)
    assert outcome.status == 0
    warnings = [line for line in outcome.err.splitlines() if "warning" in line]
    assert warnings == [f"contrafuse: warning: {tmp_path / 'anim.gif'}: has 2 frames (animated or multi-page); only the first is used"]


# -- hostile and invalid weights ---------------------------------------------------------------

def float_bytes(count: int) -> bytes:
    return np.zeros(count, np.float32).tobytes()


WEIGHTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "code in the pickle": (lambda d: torch_archive(d / "w.pth", {"x": Hostile()}, {}), "system, which could run code"),
    "unknown storage type": (
        lambda d: torch_archive(d / "w.pth", {"x": TensorRecord(StorageRef("0", 4, kind=torch.nn.Linear), (4,), (1,))}, {"0": float_bytes(4)}),
        "unexpected persistent record"),
    "absurd strides": (
        lambda d: torch_archive(d / "w.pth", {"x": TensorRecord(StorageRef("0", 4), (1000, 1000), (10**9, 1))}, {"0": float_bytes(4)}),
        "reaches past its storage"),
    "storage smaller than declared": (
        lambda d: torch_archive(d / "w.pth", {"x": TensorRecord(StorageRef("0", 100), (100,), (1,))}, {"0": float_bytes(4)}),
        "storage 0 holds 16 bytes, the pickle declares 400"),
    "deeply nested modules": (
        lambda d: torch_archive(d / "w.pth", nested_modules(200), {}), "nested more than"),
    "more tensor data than allowed": (
        lambda d: torch_archive(d / "w.pth", {"x": TensorRecord(StorageRef("0", 2**40), (2**40,), (1,))}, {"0": b""}),
        "more than 768 MiB"),
    "not a zip": (lambda d: written(d / "w.pth", b"\x80\x02junk"), "not a torch.save zip archive"),
    "nan weights": (lambda d: cs2fusion_safetensors(d / "w.safetensors", float("nan")), "NaN or infinite"),
    "integer weights": (lambda d: cs2fusion_safetensors(d / "w.safetensors", None), "expected floating point"),
    "weights of another model": (lambda d: other_model_safetensors(d / "w.safetensors"), "not 'cs2fusion'"),
}


def nested_modules(depth: int) -> ModuleRecord:
    module = ModuleRecord({})
    for _ in range(depth):
        module = ModuleRecord({}, {"child": module})
    return module


def cs2fusion_safetensors(path: Path, fill: float | None) -> Path:
    state = {k: v.clone() for k, v in create_model("cs2fusion", weights=None).state_dict().items()}
    key = next(iter(state))
    state[key] = state[key].to(torch.int32) if fill is None else state[key].fill_(fill)
    save_file(state, str(path), metadata={"model": "cs2fusion"})
    return path


def other_model_safetensors(path: Path) -> Path:
    save_file({"w": torch.zeros(2)}, str(path), metadata={"model": "coconet"})
    return path


@pytest.mark.parametrize("case", sorted(WEIGHTS))
def test_hostile_or_invalid_weights_are_refused(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ir, vis = pair(tmp_path / "data")
    make, problem = WEIGHTS[case]
    weights = make(tmp_path)
    before = checksums(tmp_path)
    old_limit = sys.getrecursionlimit()
    outcome = run(fuse_with_weights(ir, vis, weights, tmp_path / "out.png"), capsys)
    assert sys.getrecursionlimit() == old_limit
    assert_refused(outcome, 2, weights.name, problem)
    assert not (tmp_path / "HACKED").exists()
    assert_untouched(tmp_path, before)


# VmHWM is this process image's own peak (ru_maxrss would include the forking pytest process's).
MEMORY_PROBE = textwrap.dedent('''
    import sys
    from contrafuse.errors import WeightsError
    from contrafuse.models import create_model
    try:
        create_model("cs2fusion", weights=sys.argv[1])
    except WeightsError as exc:
        print("refused:", exc)
    peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
    print("peak_mb", peak_kb / 1024)
''')


def deflate_bomb(path: Path) -> Path:
    """A small .pth whose one storage entry inflates to 512 MiB while the pickle declares 16 bytes."""
    buffer = io.BytesIO()
    _ArchivePickler(buffer, protocol=2).dump({"x": TensorRecord(StorageRef("0", 4), (4,), (1,))})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        with archive.open("archive/data/0", "w", force_zip64=True) as entry:
            block = bytes(1 << 20)
            for _ in range(512):
                entry.write(block)
    return path


@pytest.mark.parametrize("make", [deflate_bomb, lambda p: WEIGHTS["more tensor data than allowed"][0](p.parent)],
                         ids=["deflate bomb", "huge declared storage"])
def test_hostile_weights_stay_under_the_memory_bound(make, tmp_path):
    weights = make(tmp_path / "w.pth")
    assert weights.stat().st_size < 4 * 2**20
    probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(weights)], capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    assert "refused:" in probe.stdout and "Traceback" not in probe.stderr
    peak = float(probe.stdout.split("peak_mb")[1])
    assert peak < 1536, f"peak RSS {peak:.0f} MB"


# -- outputs -----------------------------------------------------------------------------------

def test_a_parent_that_is_a_file_is_one_clear_error(tmp_path, capsys):
    ir, vis = pair(tmp_path)
    (tmp_path / "blocker").write_text("a file")
    before = checksums(tmp_path)
    outcome = run(["fuse", "--ir", ir, "--vis", vis, "--out", tmp_path / "blocker" / "out.png", "--model", "average"], capsys)
    assert_refused(outcome, 2, "blocker/out.png", "not a folder")
    assert_untouched(tmp_path, before)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_follow_the_umask(umask, tmp_path, capsys):
    ir, vis = pair(tmp_path, size=(48, 64))
    old = os.umask(umask)
    try:
        assert run(["fuse", "--ir", ir, "--vis", vis, "--out", tmp_path / "f.png", "--model", "average"], capsys).status == 0
        folder = tmp_path / "fused"
        folder.mkdir()
        (tmp_path / "f.png").rename(folder / "ir.png")
        assert run(["eval", "--fused", folder, "--ir", tmp_path, "--vis", tmp_path, "--format", "json",
                    "--out", tmp_path / "scores.json"], capsys).status == 0
    finally:
        os.umask(old)
    for path in (folder / "ir.png", tmp_path / "scores.json"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_weights_files_follow_the_umask(umask, tmp_path, capsys):
    """safetensors replaces the temporary file with a 0600 one of its own; the written weights still get the umask's mode."""
    from contrafuse.models.weights import save_weights

    old = os.umask(umask)
    try:
        source = save_weights(create_model("cs2fusion", weights=None), tmp_path / "random.safetensors", {"model": "cs2fusion"})
        assert run(["convert", source, tmp_path / "converted.safetensors"], capsys).status == 0
    finally:
        os.umask(old)
    for path in (source, tmp_path / "converted.safetensors"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, (path, oct(path.stat().st_mode))


def test_eval_json_is_strict_json(tmp_path, capsys):
    ir, vis = pair(tmp_path, size=(48, 64))
    folder = tmp_path / "fused"
    folder.mkdir()
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(folder / "ir.png")  # all black: PSNR is -inf
    outcome = run(["eval", "--fused", folder, "--ir", tmp_path, "--vis", tmp_path, "--format", "json", "--metrics", "PSNR"], capsys)
    assert outcome.status == 0

    def refuse(constant: str) -> None:
        raise AssertionError(f"not strict JSON: {constant}")

    document = json.loads(outcome.out, parse_constant=refuse)
    assert document["images"]["ir"]["PSNR"] is None


# -- ONNX files that load but are not what the pipeline needs ----------------------------------

def onnx_file(path: Path, op: str, metadata: dict[str, str] | None = None) -> Path:
    """A tiny graph ``fused = f(ir, vis)`` with the exported files' input and output names."""
    onnx = pytest.importorskip("onnx")
    helper = onnx.helper
    shape = ["batch", 1, "height", "width"]
    inputs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, shape) for n in ("ir", "vis")]
    if op == "nan":  # (ir - ir) / (vis - vis) = 0 / 0
        nodes = [helper.make_node("Sub", ["ir", "ir"], ["zero_a"]), helper.make_node("Sub", ["vis", "vis"], ["zero_b"]),
                 helper.make_node("Div", ["zero_a", "zero_b"], ["fused"])]
    elif op == "taller":
        nodes = [helper.make_node("Concat", ["ir", "vis"], ["fused"], axis=2)]
    else:
        nodes = [helper.make_node("Max", ["ir", "vis"], ["fused"])]
    output = helper.make_tensor_value_info("fused", onnx.TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, [output]), opset_imports=[helper.make_opsetid("", 17)])
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    path.write_bytes(model.SerializeToString())
    return path


ONNX_FILES = {
    "size multiple not a number": ("max", {"size_multiple": "eight"}, 2, "size_multiple"),
    "size multiple zero": ("max", {"size_multiple": "0"}, 2, "size_multiple"),
    "unknown precision": ("max", {"contrafuse_precision": "int3"}, 2, "int3"),
    "output of another size": ("taller", {}, 1, "shape"),
    "output not finite": ("nan", {}, 1, "NaN"),
}


@pytest.mark.parametrize("case", sorted(ONNX_FILES))
def test_a_bad_onnx_file_writes_nothing(case, tmp_path, capsys):
    op, metadata, status, problem = ONNX_FILES[case]
    ir, vis = pair(tmp_path / "data")
    model = onnx_file(tmp_path / "m.onnx", op, metadata)
    before = checksums(tmp_path)
    outcome = run(["fuse", "--ir", ir, "--vis", vis, "--out", tmp_path / "out.png", "--backend", "onnxruntime",
                   "--model", model], capsys)
    assert outcome.status != 0 and "Traceback" not in outcome.err
    assert "m.onnx" in outcome.err and problem in outcome.err, outcome.err
    assert_untouched(tmp_path, before)


def test_a_model_that_gives_nan_fails_each_pair_of_a_folder_and_the_summary_says_so(tmp_path, capsys):
    for name in ("a", "b"):
        ir, vis = pair(tmp_path / "pairs" / name)
        (tmp_path / "ir").mkdir(exist_ok=True), (tmp_path / "vis").mkdir(exist_ok=True)
        ir.rename(tmp_path / "ir" / f"{name}.png"), vis.rename(tmp_path / "vis" / f"{name}.png")
    model = onnx_file(tmp_path / "m.onnx", "nan")
    before = checksums(tmp_path)
    outcome = run(["fuse", "--ir", tmp_path / "ir", "--vis", tmp_path / "vis", "--out", tmp_path / "fused",
                   "--backend", "onnxruntime", "--model", model], capsys)
    assert outcome.status == 1 and "Traceback" not in outcome.err
    assert outcome.err.count("NaN") == 2 and "2 failed" in outcome.out, (outcome.out, outcome.err)
    assert_untouched(tmp_path, before)


class _Broken(torch.nn.Module):
    """A module whose output is NaN (a float16 overflow on a GPU looks the same) or of another size."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, *, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return ir * float("nan") if self.kind == "nan" else ir[..., 1:, :]


@pytest.mark.parametrize("kind, problem", [("nan", "NaN"), ("smaller", "shape")])
def test_the_python_api_refuses_a_broken_module_output(kind, problem, tmp_path):
    from contrafuse import fuse
    from contrafuse.runtime import ModelOutputError

    ir, vis = pair(tmp_path)
    with pytest.raises(ModelOutputError, match=problem):
        fuse(ir=ir, vis=vis, model=_Broken(kind), weights=None)
