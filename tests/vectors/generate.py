#!/usr/bin/env python3
"""Golden test vectors for the zonocert ONNX importer and executor.

Builds small, seeded PyTorch models that together exercise every op the importer supports,
exports them to ONNX (TorchScript exporter, opset 17), runs them in ONNX Runtime (the reference)
and in PyTorch, and writes for each case

    tests/vectors/<case>.onnx
    tests/vectors/<case>.json   {"input_shape": [N, ...], "input": [...], "output_shape": [...],
                                 "output": [... ONNX Runtime ...], "torch_output": [...],
                                 "max_abs_torch_vs_ort": float, "onnx_ops": [...],
                                 "description": "...", "torch_snippet": "..."}

`input_shape` and `output_shape` include the batch dimension (always 2 here); `input` and
`output` are flat row-major float32 values (written as exact decimal doubles).

The Rust test crates/network/tests/golden.rs checks the importer and executor against them.

With --big (the default unless --no-big) it also writes full-size EfficientNet-B0 exports with
random weights (torchvision `efficientnet_b0` with a 1-channel stem, timm
`tf_efficientnet_b0(in_chans=1)`) and their reference outputs to --big-dir
(/tmp/zonocert_big); they are ~16 MB each and are NOT meant to be committed. The ignored test
`golden::big_effnets` reads them through ZONOCERT_BIG_DIR.

Usage:  python tests/vectors/generate.py [--no-big] [--big-dir DIR]
"""
import argparse
import inspect
import json
import os
import sys
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
SEED = 20240611
BATCH = 2
MEAN, STD = 0.1307, 0.3081

warnings.filterwarnings("ignore")
torch.set_num_threads(1)


# --------------------------------------------------------------------------------------------
# helpers


def seed(offset):
    torch.manual_seed(SEED + offset)
    np.random.seed(SEED + offset)


def randomize_bn(model, eps=None):
    """Non-trivial BatchNorm statistics (a fresh BN is the identity map)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
                if eps is not None:
                    m.eps = eps


def mnist_like(n):
    """Images in [0, 1] that are mostly 0 with a few bright strokes, like MNIST digits."""
    x = torch.rand(n, 1, 28, 28)
    mask = torch.rand(n, 1, 28, 28) < 0.3
    return torch.where(mask, x, torch.zeros_like(x))


def export(model, x, path, **kw):
    model.eval()
    torch.onnx.export(
        model,
        (x,),
        str(path),
        opset_version=17,
        dynamo=False,
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        **kw,
    )


def ort_run(path, x):
    opts = ort.SessionOptions()
    # The graph exactly as written: no fusions that could change rounding.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: x})[0]


def op_types(path):
    return sorted({n.op_type for n in onnx.load(str(path)).graph.node})


def floats(a):
    # float32 -> Python float is exact; json writes the shortest repr of that double.
    return np.asarray(a, dtype=np.float32).astype(np.float64).ravel().tolist()


def write_case(out_dir, case, model, x, description, snippet, onnx_path=None, require_ops=(), forbid_ops=()):
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = onnx_path or out_dir / f"{case}.onnx"
    x = x.contiguous().float()
    model.eval()
    with torch.no_grad():
        torch_out = model(x).float().numpy()
    x_np = x.numpy()
    ort_out = ort_run(onnx_path, x_np)
    ops = op_types(onnx_path)
    missing = [o for o in require_ops if o not in ops]
    if missing:
        sys.exit(f"{case}: expected ONNX ops {missing} in the export, found {ops}")
    present = [o for o in forbid_ops if o in ops]
    if present:
        sys.exit(f"{case}: ONNX ops {present} should not be in the export, found {ops}")
    diff = float(np.max(np.abs(torch_out.astype(np.float64) - ort_out.astype(np.float64))))
    rec = {
        "case": case,
        "description": description,
        "input_shape": list(x_np.shape),
        "output_shape": list(ort_out.shape),
        "onnx_ops": ops,
        "max_abs_torch_vs_ort": diff,
        "max_abs_output": float(np.max(np.abs(ort_out))),
        "input": floats(x_np),
        "output": floats(ort_out),
        "torch_output": floats(torch_out),
        "torch_snippet": snippet,
    }
    json_path = out_dir / f"{case}.json"
    with open(json_path, "w") as f:
        json.dump(rec, f)
        f.write("\n")
    kb = lambda p: os.path.getsize(p) / 1024
    print(
        f"{case:18s} onnx {kb(onnx_path):9.1f} KB  json {kb(json_path):8.1f} KB  "
        f"out {list(ort_out.shape)}  max|out| {rec['max_abs_output']:.3g}  max|torch-ort| {diff:.3g}\n"
        f"{'':18s} ops: {' '.join(ops)}"
    )
    return rec


def source(*fns):
    return "\n\n".join(inspect.getsource(f) for f in fns)


# --------------------------------------------------------------------------------------------
# cases


class ConvVariants(nn.Module):
    """Every Conv geometry the importer handles, plus explicit Pad nodes."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(4, 8, 3, padding=1)  # plain 3x3, bias
        self.zp = nn.ZeroPad2d((1, 2, 0, 1))  # asymmetric Pad (left, right, top, bottom)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, groups=2)  # grouped, stride 2
        self.c3 = nn.Conv2d(8, 12, 3, dilation=2, padding=(2, 1))  # dilation 2, h/w padding differ
        self.dw = nn.Conv2d(12, 12, 5, padding=2, groups=12)  # depthwise 5x5
        self.dw2 = nn.Conv2d(12, 12, 3, stride=2, padding=1, groups=12, bias=False)  # depthwise stride 2
        self.pw = nn.Conv2d(12, 6, 1)  # 1x1 pointwise
        self.c4 = nn.Conv2d(6, 5, (3, 1), stride=(2, 1), padding=(1, 0))  # non-square kernel/stride

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = self.c2(self.zp(x))
        x = F.pad(x, (0, 1, 2, 0))  # functional asymmetric padding
        x = self.c3(x)
        x = torch.relu(self.dw(x))
        x = self.dw2(x)
        x = self.pw(x)
        return self.c4(x)


def case_conv_variants(out_dir):
    seed(1)
    model = ConvVariants().eval()
    x = torch.randn(BATCH, 4, 11, 13)
    path = out_dir / "conv_variants.onnx"
    export(model, x, path)
    return write_case(
        out_dir, "conv_variants", model, x,
        "Convs with bias, groups=2, stride 2, dilation 2, depthwise (stride 1 and 2), 1x1, "
        "non-square kernel/stride, and asymmetric zero padding via nn.ZeroPad2d and F.pad; "
        "input 4x11x13 (non-square to catch h/w mix-ups).",
        source(ConvVariants, case_conv_variants),
        require_ops=["Conv", "Pad", "Relu"],
    )


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6, eps=1e-3)
        self.c2 = nn.Conv2d(6, 4, 3, stride=2, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(4)

    def forward(self, x):
        x = torch.relu(self.bn1(self.c1(x)))
        return self.bn2(self.c2(x))


def case_bn_unfolded(out_dir):
    seed(2)
    model = ConvBN().eval()
    with torch.no_grad():
        model.bn1.running_mean.copy_(torch.tensor([0.5, -0.25, 1.0, 0.0, -1.5, 0.3]))
        model.bn1.running_var.copy_(torch.tensor([0.25, 2.0, 1.0, 0.5, 4.0, 0.1]))
        model.bn1.weight.copy_(torch.tensor([1.5, -0.5, 1.0, 2.0, 0.75, 1.25]))
        model.bn1.bias.copy_(torch.tensor([0.1, 0.2, -0.3, 0.0, 0.5, -0.1]))
        model.bn2.running_mean.copy_(torch.tensor([0.2, -0.4, 0.0, 0.8]))
        model.bn2.running_var.copy_(torch.tensor([1.5, 0.3, 3.0, 0.8]))
        model.bn2.weight.copy_(torch.tensor([0.9, 1.1, -1.2, 0.6]))
        model.bn2.bias.copy_(torch.tensor([0.0, 0.25, -0.5, 0.05]))
    x = torch.randn(BATCH, 3, 9, 9)
    path = out_dir / "bn_unfolded.onnx"
    # Without constant folding the exporter does not fuse Conv+BN: BatchNormalization stays.
    export(model, x, path, do_constant_folding=False, training=torch.onnx.TrainingMode.EVAL)
    return write_case(
        out_dir, "bn_unfolded", model, x,
        "Conv + BatchNorm2d (hand-set running stats, eps 1e-3 and 1e-5) exported without constant "
        "folding so BatchNormalization nodes remain; the importer folds them into the convs.",
        source(ConvBN, case_bn_unfolded),
        require_ops=["BatchNormalization", "Conv"],
    )


class MlpOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.5, -0.2, 0.1]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.25, 0.5, 2.0]).view(1, 3, 1, 1))
        self.register_buffer("gain", torch.tensor([1.5, -0.75, 0.5]).view(1, 3, 1, 1))
        self.register_buffer("offset", torch.tensor([0.1, 0.0, -0.3]).view(1, 3, 1, 1))
        self.fc1 = nn.Linear(48, 32)
        self.drop = nn.Dropout(0.3)
        self.w = nn.Parameter(torch.randn(32, 20) * 0.3)  # MatMul without bias
        self.register_buffer("b", torch.linspace(-1, 1, 20))
        self.fc2 = nn.Linear(20, 10)

    def forward(self, x):
        x = (x - self.mean) / self.std  # Sub, Div by per-channel constants
        x = x * self.gain + self.offset  # Mul, Add by per-channel constants
        x = torch.flatten(x, 1)  # Flatten
        x = torch.relu(self.fc1(x))  # Gemm, Relu
        x = self.drop(x)  # Dropout (eval: identity)
        x = x @ self.w  # MatMul
        x = torch.sigmoid(x)  # Sigmoid
        x = x + self.b  # Add per-feature constant
        x = (x - 0.5) / 0.25  # Sub, Div by scalars
        x = 1.0 - x  # constant minus computed
        x = 2.0 * x  # constant times computed
        return torch.softmax(self.fc2(x), dim=1)  # Gemm, Softmax


def case_mlp_ops(out_dir):
    seed(3)
    model = MlpOps().eval()
    x = torch.rand(BATCH, 3, 4, 4)
    path = out_dir / "mlp_ops.onnx"
    # Constant folding off so the Dropout node (eval mode) is exported rather than removed.
    export(model, x, path, do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
    return write_case(
        out_dir, "mlp_ops", model, x,
        "Per-channel Sub/Div/Mul/Add by constants, Flatten, Gemm, Relu, Dropout (eval), MatMul "
        "without bias, Sigmoid, scalar Sub/Div, constant-minus-x, constant-times-x, Softmax.",
        source(MlpOps, case_mlp_ops),
        require_ops=["Flatten", "Gemm", "MatMul", "Relu", "Sigmoid", "Softmax", "Sub", "Div", "Mul", "Add"],
    )


class Normalize(nn.Module):
    """MNIST normalisation inside the graph, as in training/train.py."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN))
        self.register_buffer("std", torch.tensor(STD))

    def forward(self, x):
        return (x - self.mean) / self.std


def build_tiny_effnet_tv():
    from torchvision.models.efficientnet import EfficientNet, MBConvConfig

    setting = [
        MBConvConfig(1, 3, 1, 8, 8, 1),  # depthwise + SE + project, residual add
        MBConvConfig(4, 3, 2, 8, 16, 1),  # expand + depthwise stride 2 + SE + project
    ]
    net = EfficientNet(setting, dropout=0.2, stochastic_depth_prob=0.2, num_classes=10, last_channel=32)
    net.features[0][0] = nn.Conv2d(1, 8, 3, 2, 1, bias=False)  # 1-channel stem
    randomize_bn(net)
    return nn.Sequential(Normalize(), net).eval()


def case_tiny_effnet_tv(out_dir):
    seed(4)
    model = build_tiny_effnet_tv()
    x = mnist_like(BATCH)
    path = out_dir / "tiny_effnet_tv.onnx"
    export(model, x, path)
    return write_case(
        out_dir, "tiny_effnet_tv", model, x,
        "torchvision EfficientNet with two MBConv blocks (depthwise conv, squeeze-excite "
        "avgpool->conv->SiLU->conv->sigmoid->mul, one residual add), 1-channel stem, head conv, "
        "global average pool, flatten, linear; in-graph (x-0.1307)/0.3081; BN folded by the exporter.",
        source(Normalize, build_tiny_effnet_tv, case_tiny_effnet_tv),
        require_ops=["Conv", "Sigmoid", "Mul", "Add", "GlobalAveragePool", "Flatten", "Gemm"],
        forbid_ops=["BatchNormalization"],
    )


TIMM_SAME_PAD_OPS = ["Shape", "Gather", "Cast", "Ceil", "Clip", "Max", "Concat", "ConstantOfShape",
                     "Reshape", "Slice", "Transpose", "Pad"]


def build_tiny_effnet_timm():
    from timm.layers import BatchNormAct2d
    from timm.models._efficientnet_builder import decode_arch_def
    from timm.models.efficientnet import EfficientNet

    arch = [
        ["ds_r1_k3_s1_e1_c8_se0.25"],  # depthwise-separable block with SE and residual
        ["ir_r1_k3_s2_e4_c16_se0.25"],  # inverted residual, depthwise stride 2 (Conv2dSame)
    ]
    net = EfficientNet(
        block_args=decode_arch_def(arch),
        num_classes=10,
        num_features=32,
        in_chans=1,
        stem_size=8,
        pad_type="same",  # TF "same" padding: dynamic Pad before every stride-2 conv
        act_layer=nn.SiLU,
        norm_layer=partial(BatchNormAct2d, eps=1e-3),
    )
    randomize_bn(net)
    return nn.Sequential(Normalize(), net).eval()


def case_tiny_effnet_timm(out_dir):
    seed(5)
    model = build_tiny_effnet_timm()
    x = mnist_like(BATCH)
    path = out_dir / "tiny_effnet_timm.onnx"
    export(model, x, path)
    ops = op_types(path)
    print(f"{'':18s} timm same-padding chain ops present: {[o for o in TIMM_SAME_PAD_OPS if o in ops]}, "
          f"absent: {[o for o in TIMM_SAME_PAD_OPS if o not in ops]}")
    return write_case(
        out_dir, "tiny_effnet_timm", model, x,
        "timm EfficientNet built from a two-block arch def with pad_type='same': the stride-2 stem "
        "and depthwise convs are Conv2dSame, whose padding is computed in the graph "
        "(Shape/Gather/Div/Ceil/Clip/Concat/... chains feeding Pad); SE uses ReduceMean; "
        "in-graph (x-0.1307)/0.3081; BN folded by the exporter.",
        source(Normalize, build_tiny_effnet_timm, case_tiny_effnet_timm),
        require_ops=["Shape", "Gather", "Ceil", "Concat", "Pad", "Conv", "Sigmoid", "Mul", "Add"],
        forbid_ops=["BatchNormalization"],
    )


# The TorchScript exporter never emits Dropout/Identity in eval mode, nor Floor, Neg, Sqrt, Min,
# Squeeze, auto_pad, Gemm alpha/beta, ... so this case is written with onnx.helper; its
# `torch_output` comes from an independent PyTorch re-implementation (MiscReference).


def build_onnx_misc(path, w):
    from onnx import TensorProto, helper, numpy_helper

    def const(name, arr):
        return numpy_helper.from_array(np.asarray(arr), name)

    nodes = [
        helper.make_node("Identity", ["input"], ["id0"], name="identity"),
        helper.make_node("Conv", ["id0", "w1", "b1"], ["c1"], name="conv_same_upper",
                         auto_pad="SAME_UPPER", strides=[2, 2], kernel_shape=[4, 4]),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], name="conv_same_lower", auto_pad="SAME_LOWER"),
        # Pads computed by a constant chain: sqrt([0,0,4,1,0,0,0,9]) -> min(., 2) -> max(., 0).
        helper.make_node("Constant", [], ["pc"], name="pads_ints", value_ints=[0, 0, 4, 1, 0, 0, 0, 9]),
        helper.make_node("Cast", ["pc"], ["pf"], name="pads_to_float", to=TensorProto.FLOAT),
        helper.make_node("Sqrt", ["pf"], ["ps"], name="pads_sqrt"),
        helper.make_node("Floor", ["ps"], ["pfl"], name="pads_floor"),
        helper.make_node("Neg", ["pfl"], ["pn"], name="pads_neg"),
        helper.make_node("Neg", ["pn"], ["pn2"], name="pads_neg2"),
        helper.make_node("Constant", [], ["two"], name="two", value_float=2.0),
        helper.make_node("Min", ["pn2", "two"], ["pm"], name="pads_min"),
        helper.make_node("Max", ["pm", "zero_f"], ["pM"], name="pads_max"),
        helper.make_node("Unsqueeze", ["pM", "axes0"], ["pu"], name="pads_unsqueeze"),
        helper.make_node("Squeeze", ["pu", "axes0"], ["psq"], name="pads_squeeze"),
        helper.make_node("Cast", ["psq"], ["pi"], name="pads_to_int", to=TensorProto.INT64),
        helper.make_node("Pad", ["c2", "pi"], ["p"], name="pad", mode="constant"),
        helper.make_node("Dropout", ["p", "ratio"], ["d"], name="dropout"),
        helper.make_node("Relu", ["d"], ["r"], name="relu"),
        helper.make_node("ReduceMean", ["r"], ["m"], name="mean_keep", axes=[2, 3], keepdims=1),
        helper.make_node("Sigmoid", ["m"], ["sg"], name="gate"),
        helper.make_node("Mul", ["r", "sg"], ["g"], name="gate_mul"),
        helper.make_node("Transpose", ["g"], ["t"], name="transpose_identity", perm=[0, 1, 2, 3]),
        # Reshape to [N, -1] with the target computed from Shape (batch reported as 1).
        helper.make_node("Shape", ["t"], ["sh"], name="shape"),
        helper.make_node("Gather", ["sh", "idx0"], ["g0"], name="gather_batch", axis=0),
        helper.make_node("Unsqueeze", ["g0", "axes0"], ["g0u"], name="unsq_batch"),
        helper.make_node("Concat", ["g0u", "minus1"], ["target"], name="concat_target", axis=0),
        helper.make_node("Reshape", ["t", "target"], ["f"], name="reshape"),
        helper.make_node("Gemm", ["f", "wb", "cb"], ["h1"], name="gemm_alpha_beta", alpha=0.5, beta=2.0),
        helper.make_node("Transpose", ["w3"], ["w3t"], name="transpose_const", perm=[1, 0]),
        helper.make_node("Gemm", ["h1", "w3t", "b3"], ["h2"], name="gemm_transb", transB=1),
        helper.make_node("ReduceMean", ["t"], ["gp"], name="mean_drop", axes=[-1, -2], keepdims=0),
        helper.make_node("MatMul", ["gp", "w4"], ["k"], name="matmul"),
        helper.make_node("Add", ["h2", "k"], ["s"], name="add_two_paths"),
        helper.make_node("Clip", ["cv", "clo", "chi"], ["cc"], name="clip_const"),
        helper.make_node("Add", ["s", "cc"], ["output"], name="add_clipped"),
    ]
    inits = [
        const("w1", w["w1"]), const("b1", w["b1"]), const("w2", w["w2"]),
        const("zero_f", np.float32(0.0)), const("axes0", np.array([0], np.int64)),
        const("ratio", np.float32(0.5)), const("idx0", np.int64(0)),
        const("minus1", np.array([-1], np.int64)),
        const("wb", w["wb"]), const("cb", np.array([0.125], np.float32)),
        const("w3", w["w3"]), const("b3", w["b3"]), const("w4", w["w4"]),
        const("cv", w["cv"]), const("clo", np.float32(-0.2)), const("chi", np.float32(0.3)),
    ]
    graph = helper.make_graph(
        nodes, "onnx_misc",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 2, 7, 7])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 5])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="zonocert-generate")
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


class MiscReference(nn.Module):
    """What build_onnx_misc's graph computes, written independently in PyTorch."""

    def __init__(self, w):
        super().__init__()
        for k, v in w.items():
            self.register_buffer(k, torch.from_numpy(np.asarray(v)))

    def forward(self, x):
        c1 = F.conv2d(F.pad(x, (1, 2, 1, 2)), self.w1, self.b1, stride=2)  # SAME_UPPER: extra at the end
        c2 = F.conv2d(F.pad(c1, (1, 0, 1, 0)), self.w2)  # SAME_LOWER: extra at the start
        p = F.pad(c2, (1, 2, 2, 0))  # onnx pads [0,0,2,1, 0,0,0,2]
        r = torch.relu(p)
        g = r * torch.sigmoid(r.mean((2, 3), keepdim=True))
        f = g.reshape(g.shape[0], -1)
        h1 = 0.5 * (f @ self.wb) + 2.0 * 0.125
        h2 = h1 @ self.w3 + self.b3
        k = g.mean((2, 3)) @ self.w4
        return h2 + k + torch.clamp(self.cv, -0.2, 0.3)


def case_onnx_misc(out_dir):
    seed(6)
    rnd = lambda *s: (torch.randn(*s) * 0.3).numpy().astype(np.float32)
    w = {"w1": rnd(4, 2, 4, 4), "b1": rnd(4), "w2": rnd(4, 4, 2, 2), "wb": rnd(4 * 6 * 7, 6),
         "w3": rnd(6, 5), "b3": rnd(5), "w4": rnd(4, 5), "cv": np.array([-0.5, 0.1, 0.25, 0.7, -0.1], np.float32)}
    path = out_dir / "onnx_misc.onnx"
    build_onnx_misc(path, w)
    x = torch.randn(BATCH, 2, 7, 7)
    return write_case(
        out_dir, "onnx_misc", MiscReference(w), x,
        "Hand-built with onnx.helper for ops the PyTorch exporter does not emit: Identity, Dropout "
        "(inference), Conv auto_pad SAME_UPPER/SAME_LOWER, Pad with pads from a Cast/Sqrt/Floor/Neg/"
        "Min/Max/Unsqueeze/Squeeze chain, ReduceMean (keepdims 1 and 0, negative axes), broadcast Mul "
        "of computed tensors, identity Transpose, Reshape from Shape/Gather/Concat, Gemm alpha/beta and "
        "transB with a Transpose'd constant weight, MatMul, Add of two computed tensors, Clip of "
        "constants. torch_output is from an independent PyTorch re-implementation.",
        source(build_onnx_misc, MiscReference, case_onnx_misc),
        require_ops=["Identity", "Dropout", "Floor", "Neg", "Sqrt", "Min", "Max", "Squeeze", "Unsqueeze",
                     "ReduceMean", "Transpose", "Shape", "Gather", "Concat", "Reshape", "Clip", "Pad"],
    )


# --------------------------------------------------------------------------------------------
# full-size exports (not committed)


class ClampedActivations(nn.Module):
    """The clamped affine activations of MobileNet-style nets: ReLU6 and Hardtanh (ONNX Clip
    with constant bounds), hardsigmoid (HardSigmoid, alpha 1/6) in a squeeze-excite gate, and
    a one-sided clamp."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 6, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.se1 = nn.Conv2d(6, 3, 1)
        self.se2 = nn.Conv2d(3, 6, 1)
        self.fc = nn.Linear(6 * 14 * 14, 10)

    def forward(self, x):
        x = F.relu6(self.c1(x) * 3.0)  # Clip(0, 6), scaled so both clamps are met
        x = F.hardtanh(self.dw(x) - 1.0)  # Clip(-1, 1)
        g = F.hardsigmoid(self.se2(torch.relu(self.se1(F.adaptive_avg_pool2d(x, 1)))) * 4.0)  # HardSigmoid
        x = x * g
        x = torch.clamp(x, max=0.5)  # Clip with only an upper bound
        return self.fc(torch.flatten(x, 1))


def case_clamped_activations(out_dir):
    seed(7)
    model = ClampedActivations().eval()
    x = mnist_like(BATCH)
    path = out_dir / "clamped_activations.onnx"
    export(model, x, path)
    return write_case(
        out_dir, "clamped_activations", model, x,
        "ReLU6 and Hardtanh (Clip with constant bounds), hardsigmoid as a squeeze-excite gate "
        "(HardSigmoid, alpha 1/6), a one-sided clamp.",
        source(ClampedActivations, case_clamped_activations),
        require_ops=["Clip", "HardSigmoid"],
    )


def build_tv_b0():
    import torchvision

    net = torchvision.models.efficientnet_b0(num_classes=10)
    old = net.features[0][0]
    net.features[0][0] = nn.Conv2d(1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
    randomize_bn(net)
    return nn.Sequential(Normalize(), net).eval()


def build_timm_b0():
    import timm

    net = timm.create_model("tf_efficientnet_b0", pretrained=False, in_chans=1, num_classes=10)
    randomize_bn(net)
    return nn.Sequential(Normalize(), net).eval()


def big_cases(big_dir):
    for i, (case, build, desc) in enumerate([
        ("tv_efficientnet_b0", build_tv_b0, "torchvision efficientnet_b0(num_classes=10), 1-channel stem, random weights"),
        ("timm_tf_efficientnet_b0", build_timm_b0, "timm tf_efficientnet_b0(in_chans=1, num_classes=10), random weights"),
    ]):
        seed(100 + i)
        model = build()
        x = mnist_like(4)
        path = big_dir / f"{case}.onnx"
        big_dir.mkdir(parents=True, exist_ok=True)
        export(model, x, path)
        write_case(big_dir, case, model, x, desc + "; in-graph (x-0.1307)/0.3081", source(build), require_ops=["Conv"])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--big-dir", type=Path, default=Path("/tmp/zonocert_big"))
    p.add_argument("--no-big", action="store_true", help="skip the full-size B0 exports")
    p.add_argument("--only", help="write only this case (e.g. clamped_activations)")
    args = p.parse_args()
    print(f"torch {torch.__version__}  onnx {onnx.__version__}  onnxruntime {ort.__version__}")
    cases = [case_conv_variants, case_bn_unfolded, case_mlp_ops, case_tiny_effnet_tv, case_tiny_effnet_timm,
             case_onnx_misc, case_clamped_activations]
    if args.only:
        cases = [c for c in cases if c.__name__ == f"case_{args.only}"]
        if not cases:
            sys.exit(f"no case named {args.only}")
    for case in cases:
        case(args.out)
    if not args.no_big and not args.only:
        big_cases(args.big_dir)


if __name__ == "__main__":
    main()
