"""Quantisation-aware fine-tuning of CS2Fusion for its int8 export: a probe (not shipped; docs/deployment.md).

    PYTHONPATH=src python benchmarks/int8_qat.py --out runs/int8-qat [--steps 300] [--lr 3e-5]
        [--gradient 2.0] [--patch 96] [--batch 8] [--save-every 50]
    PYTHONPATH=src python benchmarks/int8_accuracy.py --models cs2fusion --int8-weights runs/int8-qat/step-100.safetensors \
        --data llvip:test,m3fd:test,fmb:test --pairs 9

A student starts from the shipped weights and learns to give the shipped fp32 output (the teacher)
*through* a simulation of the shipped int8 graph, so that its own int8 export would look like the
teacher's fp32 output. The simulation (:class:`Int8Simulation`) is read off the teacher's int8
graph, calibrated as ``contrafuse export --precision int8`` calibrates it: every activation that
graph quantises is fake-quantised with the graph's own scale and zero point (straight-through
gradients inside the range), and every convolution whose weights the graph holds in int8 gets
symmetric per-output-channel int8 weights as ONNX Runtime computes them (``absmax / 127``). A
quantised activation the simulation does not reach stops the run, so a changed recipe or a
renamed layer cannot leave it behind silently. On validation pairs the simulation is within
0.4 grey levels (mean absolute difference) of ONNX Runtime's int8 output, against 1.1-1.3 between
that output and fp32.

Training patches come from ``roadscene:train`` (the calibration split); choose on the
cross-sensor validation pairs with ``int8_accuracy.py --int8-weights``, never on tno42.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import Tensor, nn

from contrafuse.data import PatchPairs, dataset_pairs
from contrafuse.models import create_model, model_info
from contrafuse.models.cs2fusion import BORDER_PAD, SLOPE, Cs2FusionBackbone
from contrafuse.models.weights import save_weights
from contrafuse.onnx_cache import cached_export
from contrafuse.quantization import calibration_pairs, quantize_int8, recipe_for


def activation_ranges(graph_bytes: bytes) -> dict[str, tuple[float, int]]:
    """``{activation name: (scale, zero point)}`` of every activation a QDQ graph quantises."""
    graph = onnx.load_from_string(graph_bytes).graph
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    return {node.input[0]: (float(constants[node.input[1]]), int(constants[node.input[2]])) for node in graph.node
            if node.op_type == "QuantizeLinear" and node.input[0] not in constants}


def int8_weight_names(graph_bytes: bytes) -> list[str]:
    """Names of the int8 weight initialisers of a QDQ graph (each read by a DequantizeLinear)."""
    graph = onnx.load_from_string(graph_bytes).graph
    int8 = {tensor.name for tensor in graph.initializer if tensor.data_type == onnx.TensorProto.INT8}
    return [node.input[0] for node in graph.node if node.op_type == "DequantizeLinear" and node.input[0] in int8]


GRAPH_SCOPE = "backbone"  # the simulated tensors and weights are the backbone's


def backbone_name(graph_name: str) -> str | None:
    """``/model/backbone/ddm.0/Add_output_0`` -> ``ddm.0/Add``; ``model.backbone.decoder.0.weight`` ->
    ``decoder.0``; None for names outside the backbone (the graph inputs and their scaling)."""
    for marker in (f"/{GRAPH_SCOPE}/", f".{GRAPH_SCOPE}."):
        if marker in graph_name:
            rest = graph_name.split(marker, 1)[1]
            return rest.removesuffix("_output_0") if marker.startswith("/") else rest.removesuffix(".weight_quantized")
    return None


class Int8Simulation(nn.Module):
    """CS2Fusion's backbone as its int8 graph computes it, differentiable.

    ``forward(*, ir, vis)`` takes 0-255 ``(B, 1, H, W)`` inputs (already padded, as the
    registered model pads them) and returns the fused 0-255 map. ``ranges`` maps backbone tensor
    names (:func:`backbone_name`) to the graph's ``(scale, zero_point)`` (uint8); ``int8_weights``
    names the convolutions whose weights are int8.
    """

    def __init__(self, backbone: Cs2FusionBackbone, ranges: dict[str, tuple[float, int]], int8_weights: set[str]) -> None:
        super().__init__()
        self.backbone = backbone
        self.ranges = dict(ranges)
        self.int8_weights = set(int8_weights)
        self.reached: set[str] = set()

    def q(self, x: Tensor, name: str) -> Tensor:
        """``x`` rounded as the graph rounds tensor ``name`` (unchanged when the graph keeps it float)."""
        if name not in self.ranges:
            return x
        self.reached.add(name)
        scale, zero = self.ranges[name]
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, 0, 255)

    def conv(self, layer: nn.Conv2d, weights: str, scope: str, x: Tensor) -> Tensor:
        """``layer`` (whose weights the graph calls ``weights``) on ``x``, its output named ``scope/Conv``."""
        weight = layer.weight
        if weights in self.int8_weights:
            self.reached.add(weights)
            scale = (weight.detach().abs().amax(dim=(1, 2, 3)) / 127).clamp_min(1e-12)
            weight = torch.fake_quantize_per_channel_affine(weight, scale, torch.zeros_like(scale, dtype=torch.int32), 0, -127, 127)
        return self.q(F.conv2d(x, weight, layer.bias, padding=layer.padding), f"{scope}/Conv")

    def conv_act(self, layer: nn.Conv2d, weights: str, scope: str, x: Tensor, act: str) -> Tensor:
        return self.q(F.leaky_relu(self.conv(layer, weights, scope, x), SLOPE), act)

    def encoder(self, which: str, x: Tensor) -> list[Tensor]:
        layers, e = getattr(self.backbone, which).layers, []
        for i, layer in enumerate(layers):
            inputs = x if i == 0 else e[0] if i == 1 else self.q(torch.cat(e[::-1], 1), f"{which}/Concat" + ("" if i == 2 else "_1"))
            suffix = "" if i == 0 else f"_{i}"
            e.append(self.conv_act(layer, f"{which}.layers.{i}", f"{which}/layers.{i}", inputs, f"{which}/LeakyRelu{suffix}"))
        return e

    def ddm(self, k: int, d: Tensor, f_vis: Tensor, f_ir: Tensor) -> Tensor:
        module, t = self.backbone.ddm[k], f"ddm.{k}"
        # one convolution called twice: the graph names its second output project_1
        projected = self.q(self.conv_act(module.project, f"{t}.project", f"{t}/project", f_vis, f"{t}/LeakyRelu")
                           + self.conv_act(module.project, f"{t}.project", f"{t}/project_1", f_ir, f"{t}/LeakyRelu_1"),
                           f"{t}/Add")
        gate = self.q(module.gate(d), f"{t}/gate/Sigmoid")
        return self.q(d + self.q(gate * projected, f"{t}/Mul"), f"{t}/Add_1")

    def forward(self, *, ir: Tensor, vis: Tensor) -> Tensor:
        levels_vis, levels_ir = self.encoder("encoder_vis", vis), self.encoder("encoder_ir", ir)
        f_vis, f_ir = self.q(torch.cat(levels_vis[::-1], 1), "Concat"), self.q(torch.cat(levels_ir[::-1], 1), "Concat_1")
        d = self.q(torch.cat([f_vis, f_ir], 1), "Concat_2")
        for stage, layer in enumerate(self.backbone.decoder):
            suffix = "" if stage == 0 else f"_{stage}"
            if stage == 3:
                return self.conv(layer, f"decoder.{stage}", f"decoder.{stage}", d)
            d = self.conv_act(layer, f"decoder.{stage}", f"decoder.{stage}", d, f"LeakyRelu{suffix}")
            d = self.ddm(stage, d, f_vis, f_ir)
        raise AssertionError("unreachable: the decoder has four stages")

    def unreached(self) -> list[str]:
        """Quantised tensors and int8 weights of the graph that the last forward did not simulate."""
        return sorted((set(self.ranges) | self.int8_weights) - self.reached)


def simulation_for(graph_bytes: bytes, backbone: Cs2FusionBackbone) -> Int8Simulation:
    """The :class:`Int8Simulation` of a calibrated int8 graph (serialised ONNX) around ``backbone``."""
    ranges = {name: r for key, r in activation_ranges(graph_bytes).items() if (name := backbone_name(key)) is not None}
    weights = {name for key in int8_weight_names(graph_bytes) if (name := backbone_name(key)) is not None}
    return Int8Simulation(backbone, ranges, weights)


def distillation_loss(predicted: Tensor, target: Tensor, l2: float, gradient_weight: float) -> dict[str, Tensor]:
    """Absolute, squared and difference errors (grey levels) of the simulated output against the teacher's,
    on the crop without the padded border."""
    inner = (..., slice(BORDER_PAD, -BORDER_PAD), slice(BORDER_PAD, -BORDER_PAD))
    err = predicted[inner] - target[inner]
    gradient = (err[..., :, 1:] - err[..., :, :-1]).abs().mean() + (err[..., 1:, :] - err[..., :-1, :]).abs().mean()
    total = err.abs().mean() + l2 * (err**2).mean() + gradient_weight * gradient
    return {"total": total, "l1": err.abs().mean(), "bias": err.mean(), "gradient": gradient}


def teacher_int8_graph(teacher: nn.Module, calibration: str, count: int) -> bytes:
    """The shipped recipe's int8 graph of the teacher, calibrated as the export calibrates it."""
    proto = onnx.load(str(cached_export("cs2fusion", teacher)))
    multiple = model_info("cs2fusion").capabilities.size_multiple
    del proto.metadata_props[:]
    return quantize_int8(proto.SerializeToString(), recipe_for("cs2fusion"), calibration_pairs(calibration, count), multiple)


def batches(pairs: PatchPairs, batch: int, seed: int):
    """Endless random batches of ``(ir, vis)`` patches, 0-255, padded as the registered model pads."""
    rng = np.random.default_rng(seed)
    while True:
        items = [pairs[(int(rng.integers(len(pairs))), int(rng.integers(2**31)))] for _ in range(batch)]
        yield tuple(F.pad(torch.stack([item[k] for item in items]) * 255.0, (BORDER_PAD,) * 4, mode="replicate")
                    for k in ("ir", "vis"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--l2", type=float, default=0.1)
    parser.add_argument("--gradient", type=float, default=2.0, help="weight of the error of neighbour differences")
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--save-every", type=int, default=50)
    parser.add_argument("--data", default="roadscene:train")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    teacher = create_model("cs2fusion").requires_grad_(False)
    student = create_model("cs2fusion").train()
    simulation = simulation_for(teacher_int8_graph(teacher, args.data, 16), student.backbone)
    data = batches(PatchPairs(dataset_pairs(*args.data.split(":", 1)), args.patch), args.batch, args.seed)
    optimizer = torch.optim.Adam(student.backbone.parameters(), lr=args.lr)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        ir, vis = next(data)
        with torch.no_grad():
            target = teacher.backbone(ir=ir, vis=vis).fused
        simulation.reached.clear()
        losses = distillation_loss(simulation(ir=ir, vis=vis), target, args.l2, args.gradient)
        if step == 1 and simulation.unreached():
            raise SystemExit(f"the int8 graph quantises {', '.join(simulation.unreached())}, which the simulation does not reach")
        optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimizer.step()
        if step % 25 == 0 or step == 1:
            print(f"step {step}: " + " ".join(f"{k} {v.item():+.3f}" for k, v in losses.items())
                  + f" ({time.perf_counter() - start:.0f} s)", flush=True)
        if step % args.save_every == 0 or step == args.steps:
            save_weights(student.eval(), args.out / f"step-{step}.safetensors",
                         {"model": "cs2fusion", "note": f"int8 QAT probe step {step}: {vars(args)}"}, overwrite=True)
            student.train()


if __name__ == "__main__":
    main()
