"""Folder runs that meet existing outputs, inputs as outputs, and write failures.

Each check: the exit status, the message, the inputs unchanged (by checksum), no temporary file left.
"""
from __future__ import annotations

import errno
import hashlib
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import contrafuse.session
import contrafuse.io
from contrafuse.atomic import PARTIAL_MARK
from contrafuse.cli.main import main

RNG = np.random.default_rng(11)


def _folders(tmp_path: Path, names=("a", "b", "c")) -> tuple[Path, Path]:
    ir, vis = tmp_path / "ir", tmp_path / "vis"
    ir.mkdir()
    vis.mkdir()
    for name in names:
        Image.fromarray(RNG.integers(0, 256, (9, 11), dtype=np.uint8)).save(ir / f"{name}.png")
        Image.fromarray(RNG.integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(vis / f"{name}.png")
    return ir, vis


def _checksums(*folders: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for f in folders for p in sorted(f.iterdir())}


def _partials(*folders: Path) -> list[Path]:
    return [p for f in folders if f.is_dir() for p in f.iterdir() if PARTIAL_MARK in p.name]


def _fuse(*args: str) -> list[str]:
    return ["fuse", *args, "--model", "average"]


def test_skip_existing_resumes_without_reading_the_done_pairs(tmp_path, capsys, monkeypatch):
    ir, vis = _folders(tmp_path)
    out = tmp_path / "out"
    assert main(_fuse("--ir", str(ir), "--vis", str(vis), "--out", str(out))) == 0
    (out / "b.png").unlink()  # as if the run had been interrupted
    kept = _checksums(out)
    stale = out / f".b.1a2b3c4d{PARTIAL_MARK}.png"
    stale.write_bytes(b"half a file")
    reads = []
    real_read = contrafuse.session.read_image
    monkeypatch.setattr(contrafuse.session, "read_image", lambda path: reads.append(Path(path).name) or real_read(path))
    capsys.readouterr()
    assert main(_fuse("--ir", str(ir), "--vis", str(vis), "--out", str(out), "--skip-existing")) == 0
    captured = capsys.readouterr()
    assert sorted(reads) == ["b.png", "b.png"]  # only the missing pair was read
    assert "fused 1 pair(s)" in captured.out and "2 skipped" in captured.out and "pairs/s" in captured.out
    assert " s, " in captured.out  # the elapsed time
    assert "stale temporary file" in captured.err and not stale.exists()
    assert {k: v for k, v in _checksums(out).items() if not k.endswith("b.png")} == kept
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png", "c.png"]


def test_rerun_without_flags_fails_fast_on_existing_outputs(tmp_path, capsys):
    ir, vis = _folders(tmp_path)
    out = tmp_path / "out"
    assert main(_fuse("--ir", str(ir), "--vis", str(vis), "--out", str(out))) == 0
    kept = _checksums(out)
    assert main(_fuse("--ir", str(ir), "--vis", str(vis), "--out", str(out))) == 1
    assert capsys.readouterr().err.count("already exists") == 3 and _checksums(out) == kept


def test_a_folder_run_that_fuses_nothing_exits_2_with_the_reason(tmp_path, capsys):
    empty_ir, empty_vis = tmp_path / "empty_ir", tmp_path / "empty_vis"
    empty_ir.mkdir()
    empty_vis.mkdir()
    assert main(_fuse("--ir", str(empty_ir), "--vis", str(empty_vis), "--out", str(tmp_path / "o1"))) == 2
    captured = capsys.readouterr()
    assert "hold no images" in captured.err and "fused 0" not in captured.out and not (tmp_path / "o1").exists()
    ir, vis = _folders(tmp_path, names=("a", "b"))
    (vis / "a.png").rename(vis / "x.png")
    (vis / "b.png").rename(vis / "y.png")
    assert main(_fuse("--ir", str(ir), "--vis", str(vis), "--out", str(tmp_path / "o2"))) == 2
    err = capsys.readouterr().err
    assert "no image of --ir" in err and "4 unmatched" in err and err.count("unmatched (no partner") == 4


def test_a_resumed_run_with_every_output_done_still_exits_0(tmp_path, capsys):
    ir, vis = _folders(tmp_path)
    out = tmp_path / "out"
    assert main(_fuse("--ir", str(ir), "--vis", str(vis), "--out", str(out))) == 0
    assert main(_fuse("--ir", str(ir), "--vis", str(vis), "--out", str(out), "--skip-existing")) == 0
    assert "3 skipped" in capsys.readouterr().out


def test_ctrl_c_says_what_is_done_and_prints_the_command_that_continues(tmp_path, capsys, monkeypatch):
    names = [f"p{i:02d}" for i in range(16)]  # more than the pipeline holds in flight
    ir, vis = _folders(tmp_path, names=names)
    out = tmp_path / "out"
    real_run = contrafuse.session.run_batched

    def interrupted_after_one(*args, **kwargs):  # Ctrl-C lands in the main thread, between outcomes
        outcomes = real_run(*args, **kwargs)
        yield next(outcomes)
        outcomes.close()  # as the interrupt does: running jobs finish, queued ones are cancelled
        raise KeyboardInterrupt

    monkeypatch.setattr(contrafuse.session, "run_batched", interrupted_after_one)
    assert main(_fuse("--ir", str(ir), "--vis", str(vis), "--out", str(out), "--overwrite")) == 130
    err = capsys.readouterr().err.strip().splitlines()[-1]
    done = len(list(out.glob("*.png")))
    assert 1 <= done < 16 and f"contrafuse: interrupted: {done} of 16 output(s) in {out} are complete" in err
    command = shlex.split(err.split("continue with: ", 1)[1])
    assert command[0] == "contrafuse" and "--skip-existing" in command and "--overwrite" not in command
    monkeypatch.setattr(contrafuse.session, "run_batched", real_run)
    assert main(command[1:]) == 0
    assert f"fused {16 - done} pair(s)" in capsys.readouterr().out and not _partials(out)
    assert sorted(p.name for p in out.iterdir()) == [f"{name}.png" for name in names]


def test_ctrl_c_on_one_pair_says_nothing_was_written(tmp_path, capsys, monkeypatch):
    ir, vis = _folders(tmp_path, names=("a",))

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(contrafuse.session.Fuser, "fuse_prepared", interrupt)
    out = tmp_path / "f.png"
    assert main(_fuse("--ir", str(ir / "a.png"), "--vis", str(vis / "a.png"), "--out", str(out))) == 130
    assert f"contrafuse: interrupted: nothing was written to {out}" in capsys.readouterr().err and not out.exists()


def test_skip_existing_and_overwrite_contradict(tmp_path, capsys):
    ir, vis = _folders(tmp_path)
    assert main(_fuse("--ir", str(ir), "--vis", str(vis), "--out", str(tmp_path / "o"), "--skip-existing",
                      "--overwrite")) == 2
    assert "contradict" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_single_pair_output_that_is_an_input_is_refused_even_with_overwrite(tmp_path, capsys):
    ir, vis = _folders(tmp_path, ("a",))
    before = _checksums(ir, vis)
    for target, role in ((ir / "a.png", "infrared input"), (vis / ".." / "vis" / "a.png", "visible input")):
        assert main(_fuse("--ir", str(ir / "a.png"), "--vis", str(vis / "a.png"), "--out", str(target), "--overwrite")) == 2
        err = capsys.readouterr().err
        assert str(target) in err and role in err and "never replaces an input" in err
    assert _checksums(ir, vis) == before and not _partials(ir, vis)


def test_folder_output_into_an_input_folder_fails_those_pairs_only(tmp_path, capsys):
    ir, vis = _folders(tmp_path, ("a", "b"))
    Image.fromarray(np.zeros((9, 11), np.uint8)).save(vis / "c.jpg")  # unmatched, untouched
    before = _checksums(ir, vis)
    status = main(_fuse("--ir", str(ir), "--vis", str(vis), "--out", str(ir), "--overwrite"))
    err = capsys.readouterr().err
    assert status == 1
    assert err.count("never replaces an input") == 2 and f"{ir / 'a.png'}" in err and "infrared input" in err
    assert _checksums(ir, vis) == before and not _partials(ir, vis)
    # a suffix that differs from the inputs' is a different file: those outputs are written
    assert main(_fuse("--ir", str(ir), "--vis", str(vis), "--out", str(ir), "--suffix", ".bmp")) == 0
    assert sorted(p.name for p in ir.glob("*.bmp")) == ["a.bmp", "b.bmp"]


def test_output_folder_that_is_a_file_fails_every_pair_with_one_message(tmp_path, capsys):
    ir, vis = _folders(tmp_path, ("a", "b"))
    blocker = tmp_path / "out"
    blocker.write_bytes(b"a file, not a folder")
    assert main(_fuse("--ir", str(ir), "--vis", str(vis), "--out", str(blocker))) == 1
    err = capsys.readouterr().err
    assert err.count("failed ") == 2 and f"{blocker / 'a.png'}" in err and "is a file, not a folder" in err
    assert blocker.read_bytes() == b"a file, not a folder"


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "no space left on the device"), (errno.EACCES, "permission denied")])
def test_a_write_failure_is_that_pairs_failure_and_the_batch_goes_on(tmp_path, capsys, monkeypatch, code, reason):
    ir, vis = _folders(tmp_path)
    out = tmp_path / "out"
    real_encode = contrafuse.io._encode

    def encode(temp, image):
        if temp.name.startswith(".b."):
            raise OSError(code, "simulated")
        real_encode(temp, image)

    monkeypatch.setattr(contrafuse.io, "_encode", encode)
    before = _checksums(ir, vis)
    assert main(_fuse("--ir", str(ir), "--vis", str(vis), "--out", str(out))) == 1
    err = capsys.readouterr().err
    assert f"failed b: {out / 'b.png'}: {reason}" in err and err.count("failed ") == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "c.png"]  # no temporary file left
    assert _checksums(ir, vis) == before
