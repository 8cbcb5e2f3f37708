"""What a registered model declares it needs and can do (its registry entry's ``capabilities``).

The runtime, ONNX export, int8 quantisation and training read these here instead of probing
the module: a new method states them once, beside its ``register_model`` line.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

CALIBRATION_METHOD = "MinMax"


@dataclass(frozen=True)
class Int8Recipe:
    """How one model is quantised: which operator types, and which nodes stay float32 (and why).

    ``op_types``: operator types to quantise (None: every type the quantiser supports);
    ``keep_float``: fragments of node names kept in float32. The remaining fields are the
    quantiser's settings: ``method`` (calibration: ``MinMax``, ``Percentile``, ``Entropy``,
    ``Distribution``; ``percentile`` for ``Percentile``), ``per_channel`` weight scales,
    ``reduce_range`` (7-bit weights), ``activation_symmetric`` (activations centred on zero),
    ``quant_format`` (``QDQ`` or ``QOperator``), ``leaky_positive_ranges`` (the 8-bit range of a
    convolution output that only feeds a LeakyReLU starts at 0: see :mod:`contrafuse.quantization`),
    ``float_activations`` (fragments of activation tensor names left unquantised after calibration:
    their consumers read float32, so a layer whose input and output are both listed runs in float32).
    """

    op_types: tuple[str, ...] | None
    keep_float: tuple[str, ...]
    why: str
    method: str = CALIBRATION_METHOD
    percentile: float = 99.999
    per_channel: bool = True
    reduce_range: bool = False
    activation_symmetric: bool = False
    quant_format: str = "QDQ"
    leaky_positive_ranges: bool = False
    float_activations: tuple[str, ...] = ()

    def describe(self) -> str:
        """The settings, for the file's metadata."""
        method = f"{self.method} ({self.percentile} %)" if self.method == "Percentile" else self.method
        weights = "per output channel" if self.per_channel else "per tensor"
        activations = "int8 symmetric" if self.activation_symmetric else "uint8"
        leaky = "; convolution outputs feeding a LeakyReLU quantised over their positive range" if self.leaky_positive_ranges else ""
        floats = f"; activations kept float32: {', '.join(self.float_activations)}" if self.float_activations else ""
        return (f"{self.quant_format} format, {method} calibration; weights int8 symmetric {weights}"
                f"{' (reduced range)' if self.reduce_range else ''}, activations {activations} per tensor{leaky}{floats}")


@dataclass(frozen=True)
class Capabilities:
    """What the pipeline may rely on for one model.

    * ``value_scale``: the pixel scale the module's ``forward``/``fuse`` takes and returns
      (1.0: luma in [0, 1], the registry contract; 255.0: 0-255). The runner scales to it.
    * ``size_multiple``: input sizes the traced ONNX core needs (the exported file pads to it).
    * ``onnx_core``: the traceable module of a built model when its forward depends on the image
      size through Python values (e.g. padding); None: the model itself is traced.
    * ``thread_invariant``: ``fuse`` gives the same bits whatever the intra-op thread count, so
      CPU runs may use several workers at once without changing outputs.
    * ``int8``: how its ONNX export is quantised (None: no int8 export).
    * ``recipe``: the training recipe that trains it (``contrafuse train RECIPE``), or None.
    * ``onnx_by_default``: its ONNX export runs faster than its PyTorch path on a CPU, so the
      default backend (``auto``) runs it through a cached export (:mod:`contrafuse.onnx_cache`).
    """

    value_scale: float = 1.0
    size_multiple: int = 1
    onnx_core: Callable[[nn.Module], nn.Module] | None = None
    thread_invariant: bool = False
    int8: Int8Recipe | None = None
    recipe: str | None = None
    onnx_by_default: bool = False

    def traced_module(self, network: nn.Module) -> nn.Module:
        """What ONNX export traces for ``network``: its core, taking and returning luma in [0, 1]."""
        from .value_scale import AtValueScale

        core = self.onnx_core(network) if self.onnx_core is not None else network
        return core if self.value_scale == 1.0 else AtValueScale(core, self.value_scale)
