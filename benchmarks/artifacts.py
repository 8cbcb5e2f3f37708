"""Artifacts: the share of pixels that neither source holds (OUT25), for every model.

    python benchmarks/artifacts.py --out runs/artifacts \
        [--data llvip:test m3fd:test fmb:test tno42 roadscene:test50] \
        [--models average,laplacian,max,cs2fusion,coconet] [--extra coconet_v1=coconet:FILE]

OUT25 (contrafuse.metrics, regions.py): % of pixels more than 25 grey levels brighter than both
sources or darker than both. Prints, per model and dataset, the mean over the images and the
worst image, then the same over all images; the target of docs/coconet.md is a mean of at most
0.5 % and no image above 2 %. Fused images are cached in ``--out`` (a `contrafuse bench` folder),
so a later `contrafuse bench --out` there reuses them.
"""
from __future__ import annotations

import argparse
import math

from contrafuse.bench import parse_models, resolve_dataset, run_bench
from contrafuse.bench.specs import Method

DATASETS = ["llvip:test", "m3fd:test", "fmb:test", "tno42", "roadscene:test50"]
MEAN_TARGET, IMAGE_TARGET = 0.5, 2.0


def extra_method(entry: str) -> Method:
    """``LABEL=MODEL:WEIGHTS``: a registered model with other weights, under its own label."""
    label, _, rest = entry.partition("=")
    model, _, weights = rest.partition(":")
    return Method(label, "model", model=model, weights=weights)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", nargs="+", default=DATASETS)
    parser.add_argument("--models", default="average,laplacian,max,cs2fusion,coconet")
    parser.add_argument("--extra", nargs="*", default=[], metavar="LABEL=MODEL:WEIGHTS")
    parser.add_argument("--data-root")
    args = parser.parse_args()
    datasets = [resolve_dataset(spec, args.data_root) for spec in args.data]
    methods = parse_models([args.models]) + [extra_method(e) for e in args.extra]
    bench = run_bench(datasets, methods, args.out, metric_names=["OUT25"], progress=False)
    everything: dict[str, list[float]] = {m.label: [] for m in methods}
    print(f"{'model':14s} {'dataset':18s} {'mean %':>7s} {'worst %':>8s}  worst image")
    for dataset in datasets:
        for method in methods:
            values = {name: v["OUT25"] for name, v in bench.results[dataset.label][method.label].values.items()
                      if not math.isnan(v["OUT25"])}
            everything[method.label] += values.values()
            worst = max(values, key=values.get)
            print(f"{method.label:14s} {dataset.label:18s} {sum(values.values()) / len(values):7.3f} "
                  f"{values[worst]:8.3f}  {worst}")
    print(f"\nall {sum(len(d.pairs) for d in datasets)} pairs (targets: mean <= {MEAN_TARGET} %, worst <= "
          f"{IMAGE_TARGET} %)")
    for label, values in everything.items():
        mean, worst = sum(values) / len(values), max(values)
        verdict = "meets" if mean <= MEAN_TARGET and worst <= IMAGE_TARGET else "misses"
        print(f"{label:14s} mean {mean:6.3f} %  worst {worst:6.3f} %  {verdict} the targets")


if __name__ == "__main__":
    main()
