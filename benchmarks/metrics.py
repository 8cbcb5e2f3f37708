"""Time every metric and the whole default suite per TNO image, next to straightforward
NumPy/SciPy transcriptions of VIF and Qabf (2-D ``scipy.signal.convolve2d`` as in the
reference evaluator), in the same run so the ratios are comparable on a noisy machine.

    python benchmarks/metrics.py [--shared DIR] [--repeat 3] [--extra 3]

Images: the five golden TNO pairs (fused = SeAFusion outputs) plus ``--extra`` 620x450 TNO
pairs (fused = rounded mean of the sources). Times are the minimum over ``--repeat`` runs;
each metric is timed alone (so Qabf and Nabf each pay for the Sobel responses they share in a
suite). ``suite_cpu`` is the process CPU time of the suite, less sensitive to other jobs on a
shared machine than wall time; the load average is printed before and after.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.signal import convolve2d

from contrafuse import metrics
from contrafuse.metrics._common import FusionImages
from contrafuse.metrics._gray import load_triplet
from contrafuse.metrics import METRICS


def straightforward_vif(ref: np.ndarray, dist: np.ndarray) -> float:
    """vifp_mscale written out with 2-D convolve2d, the way the reference evaluator does it."""
    sigma_nsq, eps = 2.0, 1e-10
    num = den = 0.0
    for scale in range(1, 5):
        n = 2 ** (5 - scale) + 1
        sd = n / 5.0
        y, x = np.mgrid[-(n - 1) / 2 : (n - 1) / 2 + 1, -(n - 1) / 2 : (n - 1) / 2 + 1]
        win = np.exp(-(x * x + y * y) / (2 * sd * sd))
        win /= win.sum()
        if scale > 1:
            ref = convolve2d(ref, win, mode="valid")[::2, ::2]
            dist = convolve2d(dist, win, mode="valid")[::2, ::2]
        mu1, mu2 = convolve2d(ref, win, mode="valid"), convolve2d(dist, win, mode="valid")
        s1 = np.maximum(convolve2d(ref * ref, win, mode="valid") - mu1 * mu1, 0)
        s2 = np.maximum(convolve2d(dist * dist, win, mode="valid") - mu2 * mu2, 0)
        s12 = convolve2d(ref * dist, win, mode="valid") - mu1 * mu2
        g = s12 / (s1 + eps)
        sv = s2 - g * s12
        g[s1 < eps] = 0
        sv[s1 < eps] = s2[s1 < eps]
        s1[s1 < eps] = 0
        g[s2 < eps] = 0
        sv[s2 < eps] = 0
        sv[g < 0] = s2[g < 0]
        g[g < 0] = 0
        sv[sv <= eps] = eps
        num += np.sum(np.log10(1 + g * g * s1 / (sv + sigma_nsq)))
        den += np.sum(np.log10(1 + s1 / sigma_nsq))
    return 1.0 if den == 0 else num / den


def straightforward_qabf(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> float:
    """Xydeas-Petrovic Qabf with convolve2d 'same' in float32, as the reference evaluator."""
    h1 = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float32)
    h3 = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32)

    def edges(img):
        sx, sy = convolve2d(img, h3, mode="same"), convolve2d(img, h1, mode="same")
        g = np.sqrt(sx * sx + sy * sy)
        ang = np.zeros_like(img)
        ang[sx == 0] = math.pi / 2
        ang[sx != 0] = np.arctan(sy[sx != 0] / sx[sx != 0])
        return g, ang

    def q(ga, aa, gf, af):
        gaf = np.zeros_like(aa)
        gaf[ga > gf] = gf[ga > gf] / ga[ga > gf]
        gaf[ga == gf] = gf[ga == gf]
        gaf[ga < gf] = ga[ga < gf] / gf[ga < gf]
        aaf = 1 - np.abs(aa - af) / (math.pi / 2)
        return 0.9994 / (1 + np.exp(-15 * (gaf - 0.5))) * 0.9879 / (1 + np.exp(-22 * (aaf - 0.8)))

    a, b, f = (x.astype(np.float32) for x in (a, b, f))
    (ga, aa), (gb, ab), (gf, af) = edges(a), edges(b), edges(f)
    return float(np.sum(q(ga, aa, gf, af) * ga + q(gb, ab, gf, af) * gb) / np.sum(ga + gb))


def best_time(fn, repeat: int, clock=time.perf_counter) -> tuple[float, object]:
    best, value = math.inf, None
    for _ in range(repeat):
        start = clock()
        value = fn()
        best = min(best, clock() - start)
    return best, value


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {one:.2f} {five:.2f} {fifteen:.2f}"


def image_set(shared: Path, extra: int) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    items = []
    for i in range(1, 6):
        stem = f"{i:02d}"
        f, a, b = load_triplet(shared / f"reference/metrics/seafusion_tno/{stem}.png",
                               ir=shared / f"data/tno42/ir/{stem}.png", vis=shared / f"data/tno42/vis/{stem}.png")
        items.append((stem, f, a, b))
    added = 0
    for path in sorted((shared / "data/tno42/ir").glob("*.png")):
        if added >= extra or path.stem in {s for s, *_ in items}:
            continue
        ir = metrics.load_gray(path, str(path))
        if ir.shape != (450, 620):
            continue
        vis = metrics.load_gray(shared / "data/tno42/vis" / path.name, path.name)
        items.append((path.stem + "*", np.round((ir + vis) / 2), ir, vis))
        added += 1
    return items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_shared = os.environ.get("CONTRAFUSE_SHARED", str(Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--shared", type=Path, default=Path(default_shared))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--extra", type=int, default=3, help="620x450 TNO pairs to add (fused = mean)")
    args = parser.parse_args()

    names = list(metrics.DEFAULT_NAMES)
    print(f"machine at start: {load_line()}")
    print(f"convention cddfuse; default suite = {' '.join(names)}; times in ms (min of {args.repeat}); "
          f"* = fused is the mean of the sources")
    header = ["image", "HxW", *names, "suite", "suite_cpu", "VIF_ref", "Qabf_ref", "VIFx", "Qabfx", "suitex_ref"]
    print(" ".join(f"{h:>8}" for h in header))
    ratios = []
    for stem, f, a, b in image_set(args.shared, args.extra):
        per_metric = []
        for name in names:
            t, _ = best_time(lambda: METRICS.get(name).func(FusionImages(fused=f, ir=a, vis=b), "cddfuse"), args.repeat)
            per_metric.append(t)
        suite, _ = best_time(lambda: metrics.compute(f, ir=a, vis=b), args.repeat)
        suite_cpu, _ = best_time(lambda: metrics.compute(f, ir=a, vis=b), args.repeat, clock=time.process_time)
        vif_ref, vif_value = best_time(lambda: straightforward_vif(a, f) + straightforward_vif(b, f), 1)
        qabf_ref, qabf_value = best_time(lambda: straightforward_qabf(a, b, f), 1)
        ours = metrics.compute(f, ir=a, vis=b, names=["VIF", "Qabf"])
        assert abs(ours["VIF"] - vif_value) <= 1e-4 * abs(vif_value), (ours["VIF"], vif_value)
        assert abs(ours["Qabf"] - qabf_value) <= 1e-4 * abs(qabf_value), (ours["Qabf"], qabf_value)
        vif_ratio = vif_ref / per_metric[names.index("VIF")]
        qabf_ratio = qabf_ref / per_metric[names.index("Qabf")]
        # the reference suite is dominated by VIF; everything else we time as ours
        ref_suite = suite - per_metric[names.index("VIF")] - per_metric[names.index("Qabf")] + vif_ref + qabf_ref
        ratios.append((vif_ratio, qabf_ratio, suite, f.shape, suite_cpu))
        cells = [stem, f"{f.shape[0]}x{f.shape[1]}", *(f"{1e3 * t:.1f}" for t in per_metric), f"{1e3 * suite:.0f}",
                 f"{1e3 * suite_cpu:.0f}", f"{1e3 * vif_ref:.0f}", f"{1e3 * qabf_ref:.0f}", f"{vif_ratio:.1f}", f"{qabf_ratio:.1f}",
                 f"{ref_suite / suite:.1f}"]
        print(" ".join(f"{c:>8}" for c in cells))
    vif_r = [r[0] for r in ratios]
    suite_450 = [r[2] for r in ratios if r[3] == (450, 620)]
    cpu_450 = [r[4] for r in ratios if r[3] == (450, 620)]
    print("VIF speed-up vs convolve2d transcription per image: " + " ".join(f"{r:.1f}x" for r in vif_r))
    print(f"VIF speed-up: min {min(vif_r):.1f}x, median {np.median(vif_r):.1f}x ({len(vif_r)} images)")
    print(f"Qabf speed-up: median {np.median([r[1] for r in ratios]):.1f}x")
    if suite_450:
        print(f"default suite on 450x620: median {1e3 * np.median(suite_450):.0f} ms wall "
              f"(max {1e3 * max(suite_450):.0f}), median {1e3 * np.median(cpu_450):.0f} ms CPU")
    print(f"machine at end: {load_line()} (shared; ratios are same-run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
