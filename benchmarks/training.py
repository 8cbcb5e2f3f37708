"""CS2Fusion training throughput on this machine: our step vs the authors' step structure.

    PYTHONPATH=src python benchmarks/training.py [--patch 64] [--batch 8] [--steps 6] [--variant paper|code]

"reference": the authors' structure (two full backbone passes with autograd, the CPN on both,
P undetached in L_f, retain_graph), batches loaded in the loop (no overlap).
"ours": Cs2FusionRecipe.training_step (visible-encoder-only occluded pass without autograd,
no recomputation, P detached in L_f) fed by a DataLoader worker that prepares the next batch
while the step runs. Both start from the same weights and see the same batches; the two are
timed alternately, step by step, so that load changes on a shared machine hit both alike.
Prints patches/s for each (fastest step) and the ratio of fastest and of median step times.
"""
from __future__ import annotations

import argparse
import copy
import sys
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from contrafuse.data import PatchPairs, folder_pairs
from contrafuse.training.cs2fusion import AddOccludedVisible, Cs2FusionConfig, Cs2FusionRecipe
from contrafuse.training.recipe import Stage
from contrafuse.training.sampling import SampleStream

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from authors_cs2fusion_step import authors_training_step  # noqa: E402  (the executable specification)


def synthetic_pairs(folder: Path, count: int = 8, size: int = 256) -> list:
    rng = np.random.default_rng(0)
    for sub in ("ir", "vis"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        base = rng.integers(0, 256, (size, size), dtype=np.uint8)
        Image.fromarray(base).save(folder / "ir" / f"{i:03d}.png")
        Image.fromarray(np.stack([base, 255 - base, base // 2], -1)).save(folder / "vis" / f"{i:03d}.png")
    return folder_pairs(folder / "ir", folder / "vis")


def loader(dataset: PatchPairs, batch: int, workers: int, start: int = 0) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch, sampler=SampleStream(len(dataset), 0, batch, start_step=start),
        num_workers=workers, persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant (after 1 warm-up step)")
    parser.add_argument("--variant", choices=("paper", "code"), default="paper", help="loss.augmented_positive")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers for our loop")
    args = parser.parse_args()

    cfg = Cs2FusionConfig()
    cfg.loss.augmented_positive = args.variant
    recipe = Cs2FusionRecipe()
    recipe.configure(cfg)
    torch.manual_seed(0)
    ours_models = recipe.build_models(cfg)
    ref_models = copy.deepcopy(ours_models)
    ours_opt, _ = recipe.build_optimizers(ours_models, cfg)
    ref_opt, _ = recipe.build_optimizers(ref_models, cfg)

    with tempfile.TemporaryDirectory() as tmp:
        dataset = PatchPairs(synthetic_pairs(Path(tmp)), args.patch, True, AddOccludedVisible(cfg.occlusion))
        ours_batches = iter(loader(dataset, args.batch, args.workers))
        ref_batches = iter(loader(dataset, args.batch, 0))
        stage = Stage("main", cfg.train.steps)
        ours_times, ref_times = [], []
        for step in range(args.steps + 1):
            start = time.perf_counter()
            recipe.training_step(ours_models, ours_opt, next(ours_batches), step, stage)
            ours_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            authors_training_step(ref_models["backbone"], ref_models["cpn"], ref_opt, next(ref_batches), cfg)
            ref_times.append(time.perf_counter() - start)
        drift = max((a - b).abs().max().item() for a, b in zip(ours_models["backbone"].parameters(), ref_models["backbone"].parameters()))

    # Fastest step of each: the least disturbed by other load on a shared machine (as timeit does).
    ours_step, ref_step = min(ours_times[1:]), min(ref_times[1:])
    ours_median, ref_median = statistics.median(ours_times[1:]), statistics.median(ref_times[1:])
    print(f"CS2Fusion training, CPU ({torch.get_num_threads()} threads), patch {args.patch}, batch {args.batch}, "
          f"augmented_positive={args.variant}, {args.steps} timed steps each")
    print(f"  reference step structure: {args.batch / ref_step:8.2f} patches/s  (fastest step {ref_step:.3f} s, median {ref_median:.3f} s)")
    print(f"  ours                    : {args.batch / ours_step:8.2f} patches/s  (fastest step {ours_step:.3f} s, median {ours_median:.3f} s)")
    print(f"  speed-up ours/reference : {ref_step / ours_step:.2f}x fastest steps, {ref_median / ours_median:.2f}x medians"
          f"   (max weight difference after the run: {drift:.2e})")


if __name__ == "__main__":
    main()
