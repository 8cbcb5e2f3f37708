"""How a loaded model is run: numeric precision, the compiled path, and parallel workers.

Precisions (:class:`Precision`), one setting for every entry point (``FuseOptions.precision``,
``--precision``):

* ``fp32``: full precision, the default, on every backend.
* ``fp16``, ``bf16``: PyTorch autocast (convolutions and matrix products in reduced precision,
  reductions and softmax in float32) on CUDA or on the CPU. They are meant for GPUs; on a CPU
  they run, slower than fp32, so that the code path can be tested anywhere. With ONNX Runtime,
  ``fp16`` asks the TensorRT execution provider for a float16 engine.
* ``int8``: ONNX files quantised by ``contrafuse export --precision int8`` (see
  :mod:`contrafuse.quantization`), run by ONNX Runtime on the CPU. An exported file carries its
  own precision, so ``precision=None`` runs it as stored.

Parallel workers: on a CPU, the folder and video pipelines can run the model on several images
at once, each worker with a share of the intra-op threads. A model whose ``fuse`` gives the same
bits whatever the thread count declares it on its registry entry
(``Capabilities(thread_invariant=True)``: CS2Fusion) and gets two workers by default; others
(CoCoNet: oneDNN splits the sums of some of its wide convolutions by thread count) get one unless
asked, because more would change low bits.
"""
from __future__ import annotations

import contextlib
import sys
import weakref
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from .errors import ContrafuseError
from .models.value_scale import AtValueScale
from .options import Precision, PrecisionError, as_precision
from .models.registry import capabilities_of

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def is_exported(network: nn.Module) -> bool:
    """True for an exported ONNX file being run (:class:`contrafuse.export.OnnxModel`)."""
    export = sys.modules.get("contrafuse.export")  # an OnnxModel exists only once that module is loaded
    return export is not None and isinstance(network, export.OnnxModel)


def stored_precision(network: nn.Module) -> Precision:
    """The precision a model holds: an exported file's (its metadata), else fp32."""
    return (as_precision(network.precision) if is_exported(network) else None) or Precision.FP32


def effective_precision(network: nn.Module, requested: Precision | str | None) -> Precision:
    """The precision ``network`` will run at when ``requested``; a clear error when it cannot.

    PyTorch modules run fp32, fp16 or bf16 (autocast). An exported ONNX model (anything with a
    ``precision`` attribute, i.e. :class:`contrafuse.export.OnnxModel`) runs at the precision
    it was exported with; fp16 on an fp32 file needs TensorRT's float16 engine.
    """
    requested = as_precision(requested)
    stored = stored_precision(network)
    if not is_exported(network):  # a PyTorch module
        if requested is Precision.INT8:
            raise PrecisionError(
                "int8 runs an exported, quantised ONNX file: `contrafuse export --model NAME --precision int8 --out "
                "m.onnx`, then `contrafuse fuse --backend onnxruntime --model m.onnx ...`"
            )
        return requested or Precision.FP32
    name = getattr(network, "path", "the ONNX model")
    if requested in (None, stored):
        return stored
    if requested is Precision.FP16 and stored is Precision.FP32 and getattr(network, "tensorrt_fp16", False):
        return Precision.FP16
    if requested is Precision.FP16 and stored is Precision.FP32:
        raise PrecisionError(f"{name}: fp16 with an fp32 ONNX file needs the TensorRT provider (--backend tensorrt); "
                             "or use the torch backend with --precision fp16")
    raise PrecisionError(f"{name}: holds a {stored.value} graph, so it cannot run at {requested.value}; export it "
                         f"with `contrafuse export --precision {requested.value}` or drop --precision")


@contextlib.contextmanager
def autocast(precision: Precision, device: torch.device) -> Iterator[None]:
    """PyTorch autocast for fp16/bf16 on ``device`` (CUDA or CPU); nothing for fp32."""
    dtype = AUTOCAST_DTYPES.get(precision.value)
    if dtype is None:
        yield
        return
    with torch.autocast(device.type, dtype=dtype):
        yield


_COMPILED: "weakref.WeakKeyDictionary[nn.Module, Callable[..., Tensor]]" = weakref.WeakKeyDictionary()


def compiled_forward(network: nn.Module) -> Callable[..., Tensor]:
    """``torch.compile`` of the network's plain forward, made once per module.

    The plain forward runs the whole image at once (no bands or tiles), which is what a GPU
    wants; each new input shape compiles again (dynamic shapes are off: fixed shapes are
    faster, and a stream or a batch of same-size pairs has one shape).
    """
    if network not in _COMPILED:
        _COMPILED[network] = torch.compile(network, dynamic=False)
    return _COMPILED[network]


class ModelRunner:
    """Runs a fusion model on batches of luma at a precision, optionally compiled.

    ``runner(ir=..., vis=...)``: ``(B, 1, H, W)`` float32 tensors in [0, 1] on ``device`` ->
    the fused ``(B, 1, H, W)`` float32 luma, unclamped. Calls the model's ``fuse`` (the
    registry's inference protocol) when it has one, else its ``forward``; ``compile`` runs the
    plain forward through :func:`compiled_forward` instead (PyTorch modules only).

    ``onnx``: the model's cached export (:mod:`contrafuse.onnx_cache`), run by ONNX Runtime for
    images of at most ``onnx_max_pixels``; larger ones go to the module's memory-bounded path.
    ``onnx_note``: why a run that could have used the export does not (for :meth:`describe`).
    """

    def __init__(self, network: nn.Module, *, device: torch.device, precision: Precision | str | None = None,
                 compile: bool = False, onnx: nn.Module | None = None, onnx_max_pixels: int = 0,
                 onnx_note: str = "") -> None:
        self.network, self.device = network, torch.device(device)
        self.precision = effective_precision(network, precision)
        self.onnx, self.onnx_max_pixels, self.onnx_note = onnx, onnx_max_pixels, onnx_note
        self.is_onnx = is_exported(network) or onnx is not None
        if compile and self.is_onnx:
            raise PrecisionError("compile applies to the torch backend; an ONNX model is optimised by ONNX Runtime")
        self.compiled = compile
        if compile:
            self._run = compiled_forward(network)
        else:
            self._run = getattr(network, "fuse", None) or network
        scale = capabilities_of(network).value_scale
        if scale != 1.0:
            self._run = AtValueScale(self._run, scale)

    def __call__(self, *, ir: Tensor, vis: Tensor) -> Tensor:
        if self.onnx is not None and ir.shape[-2] * ir.shape[-1] <= self.onnx_max_pixels:
            run, precision = self.onnx, Precision.FP32
        else:
            run, precision = self._run, self.precision
        with torch.inference_mode(), autocast(precision, self.device):
            fused = run(ir=ir, vis=vis).float()
        check_output(fused, ir.shape, self.name)
        return fused

    @property
    def name(self) -> str:
        path = getattr(self.network, "path", None)
        return str(path) if path is not None else type(self.network).__name__

    def describe(self) -> str:
        """``"fp32, torch"``, ``"int8, onnxruntime (CPUExecutionProvider)"``: for summaries."""
        if self.onnx is not None:
            megapixels = self.onnx_max_pixels / 1e6
            return (f"{self.precision.value}, onnxruntime (cached export; torch above {megapixels:.1f} MP) "
                    f"on {self.device.type}")
        if self.is_onnx:
            providers = ", ".join(getattr(self.network, "providers", []))
            return f"{self.precision.value}, onnxruntime ({providers})"
        note = f" ({self.onnx_note})" if self.onnx_note else ""
        return f"{self.precision.value}, torch{' compiled' if self.compiled else ''} on {self.device.type}{note}"


class ModelOutputError(ContrafuseError):
    """A model returned an image of the wrong shape or with NaN/infinite values: nothing is written."""


def check_output(fused: Tensor, expected: torch.Size, model: str) -> None:
    """Refuse an output that is not ``expected``-shaped or not finite (broken weights or graph)."""
    if tuple(fused.shape) != tuple(expected):
        raise ModelOutputError(f"{model}: the model returned shape {tuple(fused.shape)} for inputs of shape "
                               f"{tuple(expected)}; it is not a fusion model for this pipeline")
    if not bool(torch.isfinite(fused).all()):
        raise ModelOutputError(f"{model}: the model returned NaN or infinite values (broken weights or graph?); "
                               "no image was written")


def parallel_layout(runner: ModelRunner, workers: int | None = None) -> tuple[int, int]:
    """``(workers, intra-op threads per worker)`` for running ``runner`` on several images at once.

    ``workers`` None: two on a CPU with two or more threads for models whose capabilities
    declare ``thread_invariant``; one otherwise, on CUDA, for ONNX Runtime (its own thread pool)
    and for compiled runs. An explicit count is honoured on a
    CPU (and capped at the thread count); on CUDA it stays one (one stream).
    """
    threads = torch.get_num_threads()
    if runner.device.type == "cuda" or runner.is_onnx:
        return 1, threads
    if workers is None:
        invariant = capabilities_of(runner.network).thread_invariant
        workers = 2 if threads >= 2 and invariant and not runner.compiled else 1
    workers = max(1, min(int(workers), threads))
    return workers, max(1, threads // workers)


@contextlib.contextmanager
def intra_op_threads(count: int) -> Iterator[None]:
    """Set PyTorch's intra-op thread count for the duration (restored after)."""
    before = torch.get_num_threads()
    if count == before:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
