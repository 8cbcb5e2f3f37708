"""The metric registry: what each metric means, which way is better, and how it is computed."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ContrafuseError
from ..registry import Registry
from . import basic, fmi, gradient, information, regions, structural, vif
from ._common import FusionImages

class MetricError(ContrafuseError, ValueError):
    """An unknown metric name."""


HIGHER = "higher"
LOWER = "lower"


@dataclass(frozen=True)
class MetricInfo:
    """Description of one metric. ``notes`` maps convention -> what that convention does."""

    name: str
    description: str
    direction: str  # "higher" or "lower" is better
    domain: str  # what the metric reads (fused only / fused + sources) and the pixel scale
    reduction: str  # how the two sources are combined
    func: Callable[[FusionImages, str], float] = field(repr=False, compare=False)
    notes: dict[str, str] = field(default_factory=dict)
    default: bool = True  # part of the set computed when names=None

    def as_dict(self) -> dict[str, object]:
        """Plain-data view (no function) for printing or JSON."""
        return {
            "name": self.name,
            "description": self.description,
            "direction": f"{self.direction} is better",
            "domain": self.domain,
            "reduction": self.reduction,
            "notes": dict(self.notes),
            "default": self.default,
        }


_SAME = "same definition in both conventions"

_METRICS = [
    MetricInfo("EN", "Shannon entropy of F's 256-bin histogram, bits", HIGHER, "F, uint8 0..255", "none (F only)",
               information.entropy, {"cddfuse": "log2, histogram of round(F)", "matlab": "MATLAB entropy(uint8): identical"}),
    MetricInfo("SD", "standard deviation of F (contrast)", HIGHER, "F, 0..255", "none (F only)",
               basic.standard_deviation, {"cddfuse": "np.std, population (/N)",
                                          "matlab": "population (/N) like SD_evaluation.m; see docs for the uint8 saturation the MATLAB code hits"}),
    MetricInfo("SF", "spatial frequency sqrt(RF^2 + CF^2) from first differences", HIGHER, "F", "none (F only)",
               basic.spatial_frequency, {"cddfuse": "pixels 0..255", "matlab": "im2double pixels [0,1]: value / 255"}),
    MetricInfo("AG", "average gradient mean(sqrt((Gx^2+Gy^2)/2)), central differences", HIGHER, "F, 0..255", "none (F only)",
               basic.average_gradient, {"cddfuse": "sum / (H*W)", "matlab": "sum / ((H-1)(W-1)), ~0.3% higher"}),
    MetricInfo("MI", "mutual information MI(F;A) + MI(F;B), 256x256 joint histogram", HIGHER, "F, A, B uint8", "sum",
               information.mutual_information, {"cddfuse": "nats (sklearn mutual_info_score)", "matlab": "bits (log2) = nats / ln 2"}),
    MetricInfo("FMI_pixel", "feature mutual information (Haghighat fast-FMI, 3x3 windows) on raw pixels", HIGHER,
               "F, A, B", "mean of FMI(A,F) and FMI(B,F) per window, then mean over windows",
               fmi.fmi_pixel, {"cddfuse": _SAME + " (CDDFuse has no FMI)",
                               "matlab": "feature 'none'; Tang's analysis_Reference.m actually passes no feature, i.e. 'edge'"},
               default=False),
    MetricInfo("FMI_dct", "feature mutual information on the image's 2-D DCT coefficients", HIGHER, "F, A, B",
               "mean of FMI(A,F) and FMI(B,F)", fmi.fmi_dct, {"cddfuse": _SAME, "matlab": "dct2 of the whole image, orthonormal"},
               default=False),
    MetricInfo("FMI_wavelet", "feature mutual information on one level of a discrete Meyer wavelet", HIGHER, "F, A, B",
               "mean of FMI(A,F) and FMI(B,F)", fmi.fmi_wavelet,
               {"cddfuse": _SAME, "matlab": "dwt2 'dmey' approximated by a 62-tap Meyer FIR filter (not bit-identical to MATLAB)"},
               default=False),
    MetricInfo("SCD", "sum of correlations of differences r(F-B, A) + r(F-A, B)", HIGHER, "F, A, B", "sum",
               basic.sum_of_correlations_of_differences, {"cddfuse": _SAME, "matlab": _SAME}),
    MetricInfo("VIF", "multiscale pixel visual information fidelity (Sheikh-Bovik vifp_mscale, sigma_n^2=2)", HIGHER,
               "F, A, B, 0..255", "sum of vifp(A,F) and vifp(B,F)", vif.visual_information_fidelity,
               {"cddfuse": "'VIFF' of the evaluator; not Han et al.'s VIFF", "matlab": _SAME}),
    MetricInfo("Qabf", "Xydeas-Petrovic edge information preserved in F", HIGHER, "F, A, B",
               "edge-strength-weighted over both sources", gradient.qabf,
               {"cddfuse": "float32 as the evaluator", "matlab": "float64 on [0,1] images; the equal-strength quirk then scores ~0 instead of ~Tg (about -0.2% on TNO)"}),
    MetricInfo("Nabf", "artifacts: edges in F stronger than in both sources (Shreyamsha Kumar)", LOWER, "F, A, B, [0,1]",
               "weighted over both sources", gradient.nabf, {"cddfuse": _SAME + " (CDDFuse has no Nabf)", "matlab": "analysis_nabf.m"}),
    MetricInfo("SSIM", "structural similarity of F with each source", HIGHER, "F, A, B", "see notes",
               structural.ssim, {"cddfuse": "ssim(F,A)+ssim(F,B): 7x7 uniform, sample cov, data_range=2 (skimage 0.19), range 0..2",
                                 "matlab": "0.5*(ssim(F,A)+ssim(F,B)): 11x11 Gaussian sigma 1.5, population cov, data_range 255"}),
    MetricInfo("MS_SSIM", "MEF-MS-SSIM of Ma et al. (3 levels, K=0.03) with (A, B) as the reference sequence", HIGHER,
               "F, A, B, 0..255", "joint (structure of both sources)", structural.ms_ssim,
               {"cddfuse": _SAME + " (CDDFuse has no MS-SSIM)", "matlab": "analysis_ms_ssim.m; not Wang's 5-scale MS-SSIM"},
               default=False),
    MetricInfo("CC", "correlation coefficient (r(A,F) + r(B,F)) / 2", HIGHER, "F, A, B", "mean",
               basic.correlation_coefficient, {"cddfuse": _SAME, "matlab": _SAME}),
    MetricInfo("PSNR", "peak signal-to-noise ratio of F against the sources, dB", HIGHER, "F, A, B", "through MSE (mean)",
               basic.peak_signal_to_noise_ratio, {"cddfuse": "10 log10(max(F)^2 / MSE_255), ~10-18 dB",
                                                  "matlab": "20 log10(255 / sqrt(MSE_01)), mixed scales, ~55-68 dB"}),
    MetricInfo("MSE", "mean squared error of F against the sources", LOWER, "F, A, B", "mean",
               basic.mean_squared_error, {"cddfuse": "0..255 units (~1e3)", "matlab": "[0,1] images (= MSE_255 / 255^2)"}),
    MetricInfo("FG_IR", "mean |F - IR| inside the infrared saliency mask (ir-saliency-v1): targets kept", LOWER,
               "F, A, 0..255", "foreground of A only", regions.foreground_distance_to_ir,
               {"cddfuse": _SAME + " (ours)", "matlab": _SAME + " (ours)"}, default=False),
    MetricInfo("BG_VIS", "mean |F - VIS| outside the infrared saliency mask: background kept", LOWER,
               "F, B, 0..255", "background of A's mask, against B", regions.background_distance_to_vis,
               {"cddfuse": _SAME + " (ours)", "matlab": _SAME + " (ours)"}, default=False),
    MetricInfo("OUT25", "artifacts: % of pixels more than 25 grey levels brighter than both sources or darker than both",
               LOWER, "F, A, B, 0..255", "per pixel against both", regions.outside_both_share,
               {"cddfuse": _SAME + " (ours)", "matlab": _SAME + " (ours)"}, default=False),
]

METRICS: Registry[MetricInfo] = Registry("metric", MetricError)
for _metric in _METRICS:
    METRICS.add(_metric.name, _metric)
DEFAULT_NAMES: tuple[str, ...] = tuple(m.name for m in _METRICS if m.default)
ALL_NAMES: tuple[str, ...] = tuple(METRICS.names())
