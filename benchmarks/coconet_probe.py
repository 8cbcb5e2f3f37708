"""Where CoCoNet's base loss pulls the fused image, before any network training.

For random 64x64 training patches (RoadScene and LLVIP training splits only, never validation
or test pairs) this prints, for each data-sensitive measure of ``contrafuse.losses.coconet``:

* the weights it gives the visible source (gradient weight -> SSIM term, entropy weight -> MSE
  term): mean, share of patches below 0.5, and the same on sky patches;
* the pixel optimum: the fused patch optimised pixel by pixel under the base loss alone (no
  network, Adam from the average of the two sources), and where it lands: ``fg`` = mean |F - IR|
  inside the ``ir-saliency-v1`` mask, ``bg`` = mean |F - VIS| outside it, ``sky`` = mean |F - VIS|
  on sky pixels (VIS > 170 and IR < 100), all in grey levels; the average of the sources for scale;
* with ``--contrast``, the same optimum under base + contrast x (L_fg + L_bg).

    PYTHONPATH=src python benchmarks/coconet_probe.py --patches 192 --steps 300
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from contrafuse.data import dataset_pairs
from contrafuse.data.masks import MaskSource
from contrafuse.losses.coconet import LOCAL, MEASURES, base_loss, coupled_contrastive_loss, source_weights
from contrafuse.models.vgg import VGGLossFeatures
from contrafuse.training.coconet import masked_patch_pairs

SKY_VIS, SKY_IR = 170 / 255, 100 / 255


def patches(dataset: str, count: int, seed: int) -> dict[str, torch.Tensor]:
    """``count`` random 64 px patches of ``dataset``'s training split, on [-1, 1], with masks."""
    data = masked_patch_pairs(dataset_pairs(dataset, "train"), 64, False, MaskSource())
    rng = np.random.default_rng(seed)
    items = [data[(int(rng.integers(len(data))), int(rng.integers(2**31)))] for _ in range(count)]
    stack = lambda key: torch.stack([item[key] for item in items])  # noqa: E731
    return {"ir": stack("ir") * 2 - 1, "vis": stack("vis") * 2 - 1, "mask": stack("mask")}


def region_distances(f: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    ir, vis, mask = batch["ir"], batch["vis"], batch["mask"]
    sky = ((vis * 0.5 + 0.5) > SKY_VIS) & ((ir * 0.5 + 0.5) < SKY_IR) & (mask < 0.5)
    mean_in = lambda d, m: float((d * m).sum() / m.sum().clamp_min(1)) * 127.5  # noqa: E731
    return {"fg": mean_in((f - ir).abs(), mask), "bg": mean_in((f - vis).abs(), 1 - mask),
            "sky": mean_in((f - vis).abs(), sky.float())}


def pixel_optimum(batch: dict[str, torch.Tensor], measure: str, c1: float, c2: float, steps: int,
                  contrast: float, features: VGGLossFeatures | None, brightness: float) -> torch.Tensor:
    ir, vis = batch["ir"], batch["vis"]
    f = ((ir + vis) / 2).clone().requires_grad_(True)
    opt = torch.optim.Adam([f], lr=0.03)
    for _ in range(steps):
        fused = f.clamp(-1, 1)
        loss = base_loss(fused, ir=ir, vis=vis, gradient_temperature=c1, entropy_temperature=c2, measure=measure,
                         brightness=brightness).total
        if contrast > 0 and features is not None:
            loss = loss + contrast * coupled_contrastive_loss(fused, ir=ir, vis=vis, mask=batch["mask"], features=features,
                                                              layer_weights=features.layer_weights).total
        opt.zero_grad()
        loss.backward()
        opt.step()
    return f.detach().clamp(-1, 1)


def weight_row(batch: dict[str, torch.Tensor], measure: str, c1: float, c2: float, brightness: float) -> str:
    w = source_weights(ir=batch["ir"], vis=batch["vis"], gradient_temperature=c1, entropy_temperature=c2, measure=measure,
                       brightness=brightness)
    ir01, vis01 = batch["ir"] * 0.5 + 0.5, batch["vis"] * 0.5 + 0.5
    sky = (((vis01 > SKY_VIS) & (ir01 < SKY_IR)).flatten(1).float().mean(1) > 0.5)
    parts = []
    for label, weights in (("wg_vis", w.gradient_vis), ("we_vis", w.entropy_vis)):
        parts.append(f"{label} {weights.mean():.2f} (<0.5: {(weights < 0.5).float().mean() * 100:.0f} %"
                     + (f", sky {weights[sky].mean():.2f}" if bool(sky.any()) else "") + ")")
    return "; ".join(parts) + f"; sky patches {int(sky.sum())}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=192, help="patches per dataset")
    parser.add_argument("--steps", type=int, default=150, help="Adam steps of the pixel optimum (0: weights only)")
    parser.add_argument("--datasets", nargs="+", default=["roadscene", "llvip"])
    parser.add_argument("--measures", nargs="+", default=[*MEASURES, LOCAL])
    parser.add_argument("--c1", type=float, nargs="+", default=[0.5])
    parser.add_argument("--c2", type=float, nargs="+", default=[0.75])
    parser.add_argument("--contrast", type=float, nargs="+", default=[0.0])
    parser.add_argument("--brightness", type=float, default=1.0, help="brightness weight of the local measure")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    features = VGGLossFeatures() if any(c > 0 for c in args.contrast) else None
    print("| data | measure | c1 | c2 | contrast | weights of the visible source | optimum fg / bg / sky | average fg / bg / sky |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.datasets:
        batch = patches(name, args.patches, args.seed)
        avg = region_distances((batch["ir"] + batch["vis"]) / 2, batch)
        for measure in args.measures:
            for c1 in args.c1:
                for c2 in args.c2:
                    weights = weight_row(batch, measure, c1, c2, args.brightness)
                    for contrast in args.contrast:
                        found = "-"
                        if args.steps:
                            opt = region_distances(pixel_optimum(batch, measure, c1, c2, args.steps, contrast, features, args.brightness), batch)
                            found = f"{opt['fg']:.1f} / {opt['bg']:.1f} / {opt['sky']:.1f}"
                        print(f"| {name} | {measure} | {c1} | {c2} | {contrast} | {weights} | {found} | "
                              f"{avg['fg']:.1f} / {avg['bg']:.1f} / {avg['sky']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
