"""ONNX export of registered models, and :class:`OnnxModel` to run an exported file like a model.

The exported graph is the model's plain ``forward(*, ir, vis)``: inputs ``ir`` and ``vis`` are
float32 ``(N, 1, H, W)`` luma in [0, 1]; the output ``fused`` is ``(N, 1, H, W)`` on the same
scale, not clamped. Batch, height and width are dynamic. A model that pads its input to a
size multiple (CoCoNet) exports its unpadded core instead (its registry entry's
``capabilities.onnx_core`` and ``size_multiple``); the metadata's
``size_multiple`` says so and :class:`OnnxModel` pads and crops around the graph. (Models' memory-bounded ``fuse``
methods are not exported: they loop over bands in Python.) The file's metadata names the
model, the input convention, the opset and the precision (``contrafuse_precision``).

``precision="int8"`` writes a statically quantised graph instead (:mod:`contrafuse.quantization`:
calibrated on training pairs, the calibration recorded in the metadata).

:class:`OnnxModel` runs a file on the CPU, on CUDA (``CUDAExecutionProvider``) or with TensorRT
(``TensorrtExecutionProvider``, optionally building float16 engines). The GPU providers come
with ``onnxruntime-gpu`` (``pip install 'contrafuse[gpu]'``); where they are missing the error
says so.

Needs the optional extra ``onnx`` (``pip install 'contrafuse[onnx]'``).
"""
from __future__ import annotations

import io
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .atomic import write_bytes
from .errors import ContrafuseError
from .models.padding import crop, pad_to_multiple
from .models.value_scale import AtValueScale
from .models.registry import capabilities_of
from .runtime import check_output

ONNX_OPSET = 17
INPUT_NAMES = ("ir", "vis")
OUTPUT_NAME = "fused"
INPUT_CONVENTION = (
    "inputs ir, vis: float32 (N, 1, H, W) BT.601 luma in [0, 1] (ir = infrared/CT/PET/SPECT, vis = visible/MRI); "
    "output fused: float32 (N, 1, H, W) luma on the same scale, unclamped; N, H, W dynamic; "
    "H and W must be multiples of the metadata's size_multiple (reflection-pad, then crop)"
)
# Sizes the exported graph is checked on: odd, and unlike the size it was traced with.
CHECK_SIZES = ((7, 13), (123, 77))
TRACE_SIZE = (64, 80)


class ExportError(ContrafuseError):
    """A model cannot be exported, or its exported graph does not reproduce PyTorch."""


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ContrafuseError(f"ONNX support needs {module}: pip install 'contrafuse[onnx]'") from None


GPU_EXTRA = "pip install 'contrafuse[gpu]' (onnxruntime-gpu, in place of onnxruntime)"
TENSORRT_CACHE = Path(os.environ.get("CONTRAFUSE_TRT_CACHE", Path(tempfile.gettempdir()) / "contrafuse-trt-cache"))


def available_providers() -> list[str]:
    """ONNX Runtime's execution providers on this machine (empty when onnxruntime is missing)."""
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def providers_for(device: str | torch.device, *, tensorrt: bool = False, fp16: bool = False) -> list[Any]:
    """The provider list for a session: CPU; CUDA then CPU; or TensorRT, CUDA, CPU.

    A GPU provider that is not available is a :class:`ContrafuseError` saying how to get it
    (never a silent fall-back to the CPU). ``fp16`` lets TensorRT build float16 engines;
    engines are cached in ``$CONTRAFUSE_TRT_CACHE`` (default: a folder in the temp dir).
    """
    available = available_providers()
    device = torch.device(device)
    if tensorrt and device.type != "cuda":
        raise ContrafuseError("the TensorRT provider needs --device cuda")
    if fp16 and not tensorrt:
        raise ContrafuseError("fp16 with ONNX Runtime is a TensorRT engine option (--backend tensorrt)")
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise ContrafuseError(f"ONNX Runtime on this machine has no CUDA provider (it has {', '.join(available)}); {GPU_EXTRA}")
    cuda = ("CUDAExecutionProvider", {"device_id": device.index or 0})
    if not tensorrt:
        return [cuda, "CPUExecutionProvider"]
    if "TensorrtExecutionProvider" not in available:
        raise ContrafuseError(f"ONNX Runtime on this machine has no TensorRT provider; {GPU_EXTRA} and the TensorRT libraries")
    trt = ("TensorrtExecutionProvider", {
        "device_id": device.index or 0, "trt_fp16_enable": bool(fp16),
        "trt_engine_cache_enable": True, "trt_engine_cache_path": str(TENSORRT_CACHE),
    })
    return [trt, cuda, "CPUExecutionProvider"]


class OnnxModel(nn.Module):
    """An exported ``.onnx`` file run by ONNX Runtime behind the registry's ``forward(*, ir, vis)``.

    Lets the fusing pipeline treat an exported model like any other: tensors ``(N, 1, H, W)``
    in [0, 1] in, fused tensor out, on the inputs' device. ``precision`` is the file's
    (``contrafuse_precision`` in its metadata: ``fp32`` or ``int8``); ``tensorrt`` runs it with
    TensorRT (CUDA), ``tensorrt_fp16`` with float16 engines; ``threads`` sets ONNX Runtime's
    intra-op threads (default: its own choice, one per core).
    """

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu", *, tensorrt: bool = False,
                 tensorrt_fp16: bool = False, threads: int | None = None) -> None:
        super().__init__()
        ort = _require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise ContrafuseError(f"{self.path}: ONNX model file not found")
        providers = providers_for(device, tensorrt=tensorrt, fp16=tensorrt_fp16)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ContrafuseError(f"{self.path}: not a loadable ONNX model ({exc})") from None
        inputs = [i.name for i in self.session.get_inputs()]
        if inputs != list(INPUT_NAMES):
            raise ContrafuseError(f"{self.path}: expected inputs {list(INPUT_NAMES)}, found {inputs} (export with `contrafuse export`)")
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.size_multiple = _size_multiple(self.metadata, self.path)
        self.precision = self.metadata.get("contrafuse_precision", "fp32")
        if self.precision not in ("fp32", "int8"):
            raise ContrafuseError(f"{self.path}: bad metadata: contrafuse_precision is {self.precision!r}, expected "
                                  "fp32 or int8 (re-export it with `contrafuse export`)")
        self.tensorrt_fp16 = tensorrt and tensorrt_fp16
        self.providers = list(self.session.get_providers())

    def forward(self, *, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return run_session(self.session, ir=ir, vis=vis, size_multiple=self.size_multiple, name=str(self.path)).to(ir.device)


def _size_multiple(metadata: dict[str, str], path: Path) -> int:
    text = metadata.get("size_multiple", "1")
    if not text.isdigit() or not 1 <= int(text) <= 4096:
        raise ContrafuseError(f"{path}: bad metadata: size_multiple must be an integer 1..4096, found {text!r} "
                              "(re-export it with `contrafuse export`)")
    return int(text)


def run_session(session: Any, *, ir: torch.Tensor, vis: torch.Tensor, size_multiple: int = 1,
                name: str = "the ONNX model") -> torch.Tensor:
    """Run an exported graph; inputs are reflection-padded to ``size_multiple`` and the output cropped.

    An output of another shape than the (padded) input, or with NaN/infinite values, is a
    :class:`~contrafuse.runtime.ModelOutputError` naming ``name``.
    """
    (ir, box), (vis, _) = (pad_to_multiple(t.detach().float().cpu(), size_multiple) for t in (ir, vis))
    feeds = {"ir": ir.contiguous().numpy(), "vis": vis.contiguous().numpy()}
    fused = torch.from_numpy(session.run([OUTPUT_NAME], feeds)[0])
    check_output(fused, ir.shape, name)
    return crop(fused, box)


class _PositionalInputs(nn.Module):
    """``forward(ir, vis)`` calling a model's keyword-only ``forward(*, ir, vis)``: what tracing needs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        return self.model(ir=ir, vis=vis)


def _trace_to_bytes(model: nn.Module, opset: int) -> bytes:
    sample = tuple(torch.rand(1, 1, *TRACE_SIZE) for _ in INPUT_NAMES)
    axes = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which needs
        # onnxscript (not in the `onnx` extra); it still supports dynamic axes and opset 17.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _PositionalInputs(model).eval(), sample, buffer, dynamo=False, opset_version=opset, input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME], dynamic_axes={n: axes for n in (*INPUT_NAMES, OUTPUT_NAME)},
            do_constant_folding=True,
        )
    return buffer.getvalue()


def with_metadata(data: bytes, entries: dict[str, str]) -> bytes:
    """``data`` (an ONNX model's bytes) with ``entries`` added to its metadata, checked."""
    onnx = _require("onnx")
    proto = onnx.load_from_string(data)
    for key, value in entries.items():
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    proto.producer_name = "contrafuse"
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def max_difference(model: nn.Module, data: bytes, size: tuple[int, int], seed: int = 0, size_multiple: int = 1) -> float:
    """Largest absolute difference between PyTorch and ONNX Runtime on random ``size`` inputs."""
    ort = _require("onnxruntime")
    generator = torch.Generator().manual_seed(seed)
    ir, vis = (torch.rand(1, 1, *size, generator=generator) for _ in range(2))
    with torch.no_grad():
        expected = model(ir=ir, vis=vis).numpy()
    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures are reported by the caller, not logged twice
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    got = run_session(session, ir=ir, vis=vis, size_multiple=size_multiple).numpy()
    if got.shape != expected.shape:
        return float("inf")
    return float(np.abs(got - expected).max())


def _verify(name: str, model: nn.Module, data: bytes, tolerance: float, size_multiple: int) -> None:
    """Fail unless the graph reproduces PyTorch on sizes other than the traced one."""
    for size in CHECK_SIZES:
        try:
            difference = max_difference(model, data, size, size_multiple=size_multiple)
        except Exception as exc:  # onnxruntime's own error types
            difference, detail = float("inf"), f"ONNX Runtime failed: {str(exc).splitlines()[0][:200]}"
        else:
            detail = f"max difference {difference:.3g}"
        if not difference <= tolerance:
            raise ExportError(
                f"model {name!r} cannot be exported with dynamic height and width: the traced graph does not "
                f"reproduce PyTorch at {size[0]}x{size[1]} (traced at {TRACE_SIZE[0]}x{TRACE_SIZE[1]}; {detail}). "
                "Its forward depends on the image size through Python values (e.g. the number of pyramid "
                "levels, or padding to a multiple of a stride), which tracing freezes; run it with PyTorch."
            )


def export_onnx(
    model: str | nn.Module,
    out: str | os.PathLike,
    weights: str | os.PathLike | None = "default",
    opset: int = ONNX_OPSET,
    verify: bool = True,
    tolerance: float = 1e-4,
    overwrite: bool = False,
    *,
    precision: str | None = None,
    calibration: str | None = None,
    calibration_pairs: int | None = None,
    data_root: str | os.PathLike | None = None,
    model_options: Mapping[str, Any] | None = None,
) -> Path:
    """Export a registered model's ``forward(*, ir, vis)`` to an ONNX file.

    Args:
        model: a registered model name, or a module with ``forward(*, ir, vis)`` (``weights`` unused).
        out: the ``.onnx`` file to write (atomically; kept unless ``overwrite``).
        weights: as for :func:`contrafuse.create_model` (``"default"``, a path, or None).
        opset: ONNX opset version (default 17).
        verify: check with ONNX Runtime that the graph reproduces PyTorch on odd sizes
            (:data:`CHECK_SIZES`) within ``tolerance``; a model whose structure depends on
            the image size fails here with an :class:`ExportError` that says so. (An int8
            graph is checked at fp32 before it is quantised.)
        precision: None or ``"fp32"`` (the default), or ``"int8"``: static quantisation
            (:mod:`contrafuse.quantization`) calibrated on ``calibration_pairs`` pairs (default
            16) of the dataset split ``calibration`` (default ``roadscene:train``), found under
            ``data_root`` (default: as for the named datasets). fp16/bf16 are run-time choices
            (``fuse --precision``), not file formats.
        model_options: keyword options of the registered model's builder (e.g.
            ``{"border": "zeros"}``), recorded in the file's metadata.

    Returns:
        The written path.
    """
    from . import __version__
    from .models import create_model

    precision = (precision or "fp32").lower()
    if precision not in ("fp32", "int8"):
        raise ExportError(f"--precision {precision}: ONNX files are exported at fp32 or int8; fp16 and bf16 are chosen "
                          "when fusing (torch autocast, or TensorRT's fp16 engines with --backend tensorrt)")
    if precision == "fp32" and (calibration is not None or calibration_pairs is not None):
        raise ExportError("calibration settings only apply to --precision int8")
    out = Path(out)
    if out.exists() and not overwrite:
        raise ContrafuseError(f"{out}: already exists (pass --overwrite to replace it)")
    if isinstance(model, nn.Module) and model_options:
        raise ExportError(f"model options ({', '.join(model_options)}) apply to a registered model name, not a module")
    if isinstance(model, nn.Module):
        network, weights_note = model.cpu().eval(), "given module"
        info = getattr(network, "model_info", None)
        name = info.name if info is not None else type(model).__name__
    else:
        name, network = model, create_model(model, weights=weights, device="cpu", **dict(model_options or {}))
        weights_note = "shipped" if weights == "default" else (Path(weights).name if weights else "random")
    if precision == "int8":
        from .quantization import recipe_for

        recipe = recipe_for(name)  # before the export: fail fast for models without a recipe
        calibration_set = _calibration_set(calibration, calibration_pairs, data_root)  # and without the data
    # a model whose padding depends on the size exports its core; OnnxModel pads around it
    capabilities = capabilities_of(network)
    traced, size_multiple = capabilities.traced_module(network), capabilities.size_multiple
    try:
        data = _trace_to_bytes(traced.eval(), opset)
    except Exception as exc:  # the exporter raises many unrelated types
        raise ExportError(f"model {name!r} cannot be exported to ONNX: {exc}") from None
    if verify:
        reference = network if capabilities.value_scale == 1.0 else AtValueScale(network, capabilities.value_scale)
        _verify(name, reference, data, tolerance, size_multiple)
    metadata = {
        "contrafuse_model": name,
        "contrafuse_weights": weights_note,
        "contrafuse_version": __version__,
        "contrafuse_precision": precision,
        "input_convention": INPUT_CONVENTION,
        "opset": str(opset),
        "size_multiple": str(size_multiple),
    }
    if model_options:
        metadata["contrafuse_model_options"] = ",".join(f"{k}={v}" for k, v in model_options.items())
    if precision == "int8":
        data, int8_entries = _quantize(data, recipe, size_multiple, calibration_set)
        metadata.update(int8_entries)
    return write_bytes(out, with_metadata(data, metadata), overwrite=overwrite)


def _calibration_set(calibration: str | None, count: int | None,
                     data_root: str | os.PathLike | None) -> tuple[str, list[Any]]:
    """The calibration spec and its pairs (:func:`contrafuse.quantization.calibration_pairs`)."""
    from .quantization import DEFAULT_CALIBRATION, DEFAULT_CALIBRATION_PAIRS, calibration_pairs

    spec = calibration or DEFAULT_CALIBRATION
    return spec, calibration_pairs(spec, count or DEFAULT_CALIBRATION_PAIRS, data_root)


def _quantize(data: bytes, recipe: Any, size_multiple: int, calibration_set: tuple[str, list[Any]]) -> tuple[bytes, dict[str, str]]:
    from .quantization import float_nodes, int8_metadata, quantize_int8

    spec, pairs = calibration_set
    kept = float_nodes(data, recipe)
    return quantize_int8(data, recipe, pairs, size_multiple), int8_metadata(pairs, spec, recipe, kept)
