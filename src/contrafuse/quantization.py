"""Static int8 quantisation of exported ONNX models with ONNX Runtime, calibrated on training pairs.

``contrafuse export --model cs2fusion --precision int8 --out m.onnx`` (or
:func:`contrafuse.export.export_onnx` with ``precision="int8"``) exports the fp32 graph, runs
calibration pairs through it to find each tensor's range (min/max), and writes a QDQ graph:

* weights: int8, symmetric, one scale per output channel;
* activations: uint8, one scale and zero point per tensor (ONNX Runtime's fast u8s8 kernels
  on x86, VNNI where the CPU has it);
* some nodes stay float32, per model (the :class:`~contrafuse.models.capabilities.Int8Recipe` its
  registry entry declares), with the reason;
* the calibration (dataset, split, pair names, method) and the nodes kept in float32 are
  recorded in the file's metadata.

Calibration pairs come from a named dataset's training split (``roadscene:train`` by
default), spread evenly over it, at their own sizes (padded to the graph's size multiple).
Run the result with ``contrafuse fuse --backend onnxruntime --model m.onnx``.

With ``leaky_positive_ranges`` in the recipe, the range of each convolution output that goes
only into a LeakyReLU is cut at 0 after calibration. In QDQ form the convolution's output is
quantised *before* the activation, over its pre-activation range, whose negative half is as wide
as the positive one or wider (CS2Fusion's decoder: -1200 to +600), while the LeakyReLU keeps
only 1 % of it; starting the range at 0 makes the steps two to three times finer for the part
that survives, at the price of the small negative outputs (the activation then acts as a ReLU).
It suits a small negative slope only: CoCoNet's LeakyReLU(0.2) keeps a fifth of the negative
half, and cutting it costs far more than it gains (docs/deployment.md).

``float_activations`` in the recipe names activations whose Q/DQ pair is taken out after
calibration. ONNX Runtime's ``nodes_to_exclude`` keeps a node's arithmetic in float32 but still
quantises the tensors around it when a neighbour is quantised; removing the pair is what keeps the
tensor itself exact. A sensitivity sweep (``benchmarks/int8_sensitivity.py``) finds which ones
matter: in CS2Fusion nearly all the int8 error comes from the padded input images and the first
convolution of each encoder, cheap layers (one input channel) whose 8-bit outputs every later
layer builds on.

What it costs in accuracy is model- and metric-dependent and is measured, not assumed: see
docs/deployment.md (MI, VIF, Qabf and SSIM react to the sub-grey-level noise of 8-bit
activations; EN, SD and SCD much less).
"""
from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .color import luma01
from .errors import ContrafuseError
from .io import PairFiles, read_image
from .models.capabilities import Int8Recipe
from .models.padding import pad_to_multiple

DEFAULT_CALIBRATION = "roadscene:train"
DEFAULT_CALIBRATION_PAIRS = 16


class QuantizationError(ContrafuseError):
    """A model cannot be quantised (no recipe, no calibration data, quantiser failure)."""


def recipe_for(model_name: str) -> Int8Recipe:
    """The int8 recipe a registered model declares (``capabilities.int8``); a
    :class:`QuantizationError` for models without one."""
    from .models import list_models, model_info

    recipe = model_info(model_name).capabilities.int8 if model_name in list_models() else None
    if recipe is None:
        supported = [name for name in list_models() if model_info(name).capabilities.int8 is not None]
        raise QuantizationError(f"model {model_name!r} has no int8 recipe (int8 export supports "
                                f"{', '.join(supported)}); export it at fp32")
    return recipe


def calibration_pairs(spec: str = DEFAULT_CALIBRATION, count: int = DEFAULT_CALIBRATION_PAIRS,
                      root: str | os.PathLike | None = None) -> list[PairFiles]:
    """``count`` pairs spread evenly over a named dataset split (``"NAME[:SPLIT]"``, split default
    ``train``) or over two folders paired by file stem (``"IR_DIR,VIS_DIR"``); several named splits
    joined by ``+`` (``"roadscene:train+llvip:train"``) share the count evenly."""
    from .data import dataset_pairs, folder_pairs

    if "+" in spec and "," not in spec:
        parts = [part.strip() for part in spec.split("+")]
        if count < len(parts):
            raise QuantizationError(f"calibration from {len(parts)} sets needs at least {len(parts)} pairs, got {count}")
        shares = [count // len(parts) + (index < count % len(parts)) for index in range(len(parts))]
        return [pair for part, share in zip(parts, shares) for pair in calibration_pairs(part, share, root)]
    if "," in spec:
        ir_dir, vis_dir = (part.strip() for part in spec.split(",", 1))
        pairs = folder_pairs(ir_dir, vis_dir)
    else:
        name, _, split = spec.partition(":")
        pairs = dataset_pairs(name, split or "train", root)
    if count < 1:
        raise QuantizationError(f"calibration needs at least one pair, got {count}")
    if len(pairs) <= count:
        return list(pairs)
    step = len(pairs) / count
    return [pairs[int(i * step)] for i in range(count)]


def calibration_feeds(pairs: list[PairFiles], size_multiple: int = 1) -> Iterator[dict[str, np.ndarray]]:
    """Graph inputs of each pair: ``ir``, ``vis`` float32 ``(1, 1, H, W)`` luma in [0, 1], padded to ``size_multiple``."""
    for pair in pairs:
        feeds = {}
        for role, path in (("ir", pair.ir), ("vis", pair.vis)):
            luma = torch.from_numpy(luma01(read_image(path), np.float32))[None, None]
            feeds[role] = pad_to_multiple(luma, size_multiple)[0].contiguous().numpy()
        if feeds["ir"].shape != feeds["vis"].shape:
            raise QuantizationError(f"calibration pair {pair.name}: {pair.ir} and {pair.vis} differ in size")
        yield feeds


def float_nodes(graph_bytes: bytes, recipe: Int8Recipe) -> list[str]:
    """Names of the nodes of an exported graph that the recipe keeps in float32."""
    import onnx

    graph = onnx.load_from_string(graph_bytes).graph
    return [node.name for node in graph.node if any(fragment in node.name for fragment in recipe.keep_float)]


def quantize_int8(graph_bytes: bytes, recipe: Int8Recipe, pairs: list[PairFiles], size_multiple: int = 1) -> bytes:
    """The QDQ int8 graph of an fp32 graph (serialised ONNX), calibrated on ``pairs``."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        """The pairs, handed to the calibrator one at a time (``set_range``), read when asked."""

        def __init__(self) -> None:
            self.feeds: Iterator[dict[str, np.ndarray]] = iter(())

        def __len__(self) -> int:
            return len(pairs)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.feeds = calibration_feeds(pairs[start_index:end_index], size_multiple)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    keep = float_nodes(graph_bytes, recipe)
    with tempfile.TemporaryDirectory(prefix="contrafuse-int8-") as folder:
        source, target = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        source.write_bytes(graph_bytes)  # a scratch file: the quantiser and its calibrator take paths
        quiet = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)  # the quantiser logs pre-processing advice at WARNING
        # one pair per calibration step ("strided" calibration works for every method): each step
        # merges its ranges or histograms into the running ones and frees the pair's activations.
        # (CalibMaxIntermediateOutputs would bound memory too, but ONNX Runtime 1.32 drops every
        # full chunk of it without computing its ranges.)
        extra = {"CalibStridedMinMax": 1, "ActivationSymmetric": recipe.activation_symmetric}
        if recipe.method == "Percentile":
            extra["CalibPercentile"] = recipe.percentile
        try:
            quantize_static(
                str(source), str(target), Reader(), quant_format=getattr(QuantFormat, recipe.quant_format),
                per_channel=recipe.per_channel, reduce_range=recipe.reduce_range,
                activation_type=QuantType.QInt8 if recipe.activation_symmetric else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(recipe.op_types) if recipe.op_types else None, nodes_to_exclude=keep,
                calibrate_method=getattr(CalibrationMethod, recipe.method),
                extra_options=extra,
            )
        except (ContrafuseError, KeyboardInterrupt):
            raise
        except Exception as exc:  # the quantiser raises many unrelated types
            raise QuantizationError(f"int8 quantisation failed: {str(exc).splitlines()[0][:300]}") from None
        finally:
            logging.getLogger().setLevel(quiet)
        quantised = target.read_bytes()
    if recipe.leaky_positive_ranges:
        quantised = positive_leaky_ranges(quantised)
    return float_activations(quantised, recipe.float_activations) if recipe.float_activations else quantised


def float_activations(graph_bytes: bytes, fragments: tuple[str, ...]) -> bytes:
    """The QDQ graph with the QuantizeLinear / DequantizeLinear pairs of every activation whose
    name contains one of ``fragments`` removed: the consumers read the float32 tensor. A
    :class:`QuantizationError` when a fragment matches no quantised activation (a renamed layer
    must not silently leave the recipe's precision behind)."""
    names = quantized_activations(graph_bytes)
    unmatched = [f for f in fragments if not any(f in name for name in names)]
    if unmatched:
        raise QuantizationError(f"int8 recipe: no quantised activation matches {', '.join(map(repr, unmatched))}")
    return without_quantization(graph_bytes, {name for name in names if any(f in name for f in fragments)})


def quantized_activations(graph_bytes: bytes) -> list[str]:
    """Names of the tensors a QDQ graph quantises that are not weights (inputs of its activation QuantizeLinears)."""
    import onnx

    graph = onnx.load_from_string(graph_bytes).graph
    weights = {tensor.name for tensor in graph.initializer}
    return [node.input[0] for node in graph.node if node.op_type == "QuantizeLinear" and node.input[0] not in weights]


def without_quantization(graph_bytes: bytes, tensors: set[str]) -> bytes:
    """The QDQ graph with the QuantizeLinear / DequantizeLinear pairs of exactly ``tensors``
    (activation names) removed, and the initialisers only they used."""
    import onnx

    model = onnx.load_from_string(graph_bytes)
    graph = model.graph
    weights = {tensor.name for tensor in graph.initializer}
    quantized = {node.output[0]: node.input[0] for node in graph.node if node.op_type == "QuantizeLinear"
                 and node.input[0] not in weights and node.input[0] in tensors}
    dequantized = {node.output[0]: quantized[node.input[0]] for node in graph.node
                   if node.op_type == "DequantizeLinear" and node.input[0] in quantized}
    nodes = [node for node in graph.node if node.output[0] not in quantized and node.output[0] not in dequantized]
    for node in nodes:
        for index, name in enumerate(node.input):
            if name in dequantized:
                node.input[index] = dequantized[name]
    for output in graph.output:
        if output.name in dequantized:
            output.name = dequantized[output.name]
    used = {name for node in nodes for name in node.input}
    del graph.node[:]
    graph.node.extend(nodes)
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model.SerializeToString()


def positive_leaky_ranges(graph_bytes: bytes) -> bytes:
    """The QDQ graph with every convolution output that feeds only LeakyReLUs quantised over
    ``[0, high]`` instead of ``[low, high]`` (module doc: why)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(graph_bytes)
    graph = model.graph
    producer = {name: node for node in graph.node for name in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        source = producer.get(node.input[0]) if node.op_type == "QuantizeLinear" else None
        if source is None or source.op_type != "Conv":
            continue
        users = [user for dq in consumers.get(node.output[0], []) for user in consumers.get(dq.output[0], [])]
        if not users or any(user.op_type != "LeakyRelu" for user in users):
            continue
        scale_name, zero_name = node.input[1], node.input[2]
        if initializers[zero_name].data_type != onnx.TensorProto.UINT8:  # symmetric activations: no zero point to move
            continue
        scale = float(numpy_helper.to_array(initializers[scale_name]))
        zero = int(numpy_helper.to_array(initializers[zero_name]))
        high = scale * (255 - zero)
        initializers[scale_name].CopyFrom(numpy_helper.from_array(np.array(high / 255.0, dtype=np.float32), scale_name))
        initializers[zero_name].CopyFrom(numpy_helper.from_array(np.array(0, dtype=np.uint8), zero_name))
    return model.SerializeToString()


def int8_metadata(pairs: list[PairFiles], spec: str, recipe: Int8Recipe, kept: list[str]) -> dict[str, str]:
    """What the exported file records about its quantisation."""
    import onnxruntime

    return {
        "contrafuse_precision": "int8",
        "int8_calibration": f"{spec}: {len(pairs)} pairs ({', '.join(p.name for p in pairs)})",
        "int8_method": f"ONNX Runtime {onnxruntime.__version__} static quantisation, {recipe.describe()}",
        "int8_quantized_ops": ", ".join(recipe.op_types) if recipe.op_types else "all supported",
        "int8_float_nodes": f"{len(kept)} node(s) kept float32: {recipe.why}",
    }
