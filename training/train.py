#!/usr/bin/env python3
"""Train torchvision's EfficientNet-B0 (1 input channel, 10 classes) on MNIST and export ONNX.

The architecture is exactly `torchvision.models.efficientnet_b0(num_classes=10)` with the stem
conv taking one channel. The MNIST normalisation (x - 0.1307) / 0.3081 is a module inside the
model, so the exported graph takes raw pixels in [0, 1] of shape N x 1 x 28 x 28.

Training is resumable at step granularity: a checkpoint (weights, optimiser, scheduler, position
in the epoch) is written every `--ckpt-every` steps and at the end of every epoch, and the data
order of every epoch is a pure function of (seed, epoch), so a resumed run sees exactly the
batches an uninterrupted run would have seen.

Examples:
    python training/train.py --epochs 1 --limit 512             # quick smoke run (CPU, minutes)
    python training/train.py --epochs 3 --batch 128 --resume    # the shipped model, resumable
"""
import argparse
import gzip
import hashlib
import json
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

MEAN, STD = 0.1307, 0.3081


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist(root, split):
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"))
    return images, labels


class Normalize(nn.Module):
    """MNIST normalisation inside the graph: the model's input is raw pixels in [0, 1]."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(MEAN))
        self.register_buffer("std", torch.tensor(STD))

    def forward(self, x):
        return (x - self.mean) / self.std


def build_model(dropout, stochastic_depth):
    # Dropout and stochastic depth act only in training; the inference graph is the standard one.
    net = torchvision.models.efficientnet_b0(
        num_classes=10, dropout=dropout, stochastic_depth_prob=stochastic_depth
    )
    old = net.features[0][0]
    net.features[0][0] = nn.Conv2d(
        1, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False
    )
    return nn.Sequential(Normalize(), net)


def shift_batch(x, gen, max_shift=2):
    """Random translations of up to +-max_shift pixels (zero fill), one per image."""
    n = x.shape[0]
    padded = F.pad(x, (max_shift,) * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    out = torch.empty_like(x)
    for i in range(n):
        out[i] = padded[i, :, dy[i] : dy[i] + 28, dx[i] : dx[i] + 28]
    return out


def evaluate(model, images, labels, batch=1000):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i : i + batch]).float().div(255).unsqueeze(1)
            y = torch.from_numpy(labels[i : i + batch].astype(np.int64))
            correct += (model(x).argmax(1) == y).sum().item()
    return correct / len(images)


def recalibrate_bn(model, images, batch=500):
    """Re-estimates every BatchNorm's running mean and variance on `images` (no augmentation)
    with the final weights: a cumulative average over one pass, BN layers in training mode,
    everything else in eval mode, no gradients. The statistics gathered during training mix
    weights from many steps and shifted images; the test images are neither."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.eval()
    for m in bns:
        m.train()
    device = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(images), batch):
            model(torch.from_numpy(images[i : i + batch]).float().div(255).unsqueeze(1).to(device))
    model.eval()


def export_onnx(model, path):
    model.eval()
    dummy = torch.zeros(1, 1, 28, 28)
    torch.onnx.export(
        model,
        dummy,
        path,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        dynamo=False,
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mnist", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist"))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1, help="one-cycle peak learning rate")
    p.add_argument("--weight-decay", type=float, default=5e-5)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--stochastic-depth", type=float, default=0.2)
    p.add_argument("--finetune-epochs", type=int, default=0, help="extra epochs at a constant low learning rate after the one-cycle schedule")
    p.add_argument("--finetune-lr", type=float, default=0.003)
    p.add_argument("--limit", type=int, default=0, help="use only the first N training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--ckpt", default="training/checkpoint.pt")
    p.add_argument("--ckpt-every", type=int, default=50, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--out", default="models/efficientnet_b0_mnist.onnx")
    p.add_argument("--log", default="training/train_log.jsonl")
    p.add_argument("--recalibrate-bn", action="store_true", help="after training, re-estimate BatchNorm statistics on the unaugmented training set")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    # Subnormal gradients late in training slow CPU kernels by an order of magnitude.
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    train_x, train_y = load_mnist(args.mnist, "train")
    test_x, test_y = load_mnist(args.mnist, "test")
    if args.limit:
        train_x, train_y = train_x[: args.limit], train_y[: args.limit]
    steps_per_epoch = (len(train_x) + args.batch - 1) // args.batch
    total_steps = steps_per_epoch * args.epochs

    model = build_model(args.dropout, args.stochastic_depth)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total_steps)
    epoch, step_in_epoch, elapsed = 0, 0, 0.0
    if args.resume and os.path.exists(args.ckpt):
        ck = torch.load(args.ckpt, weights_only=False)
        if ck["args"]["epochs"] != args.epochs or ck["args"]["batch"] != args.batch or ck["args"]["limit"] != args.limit:
            sys.exit(f"checkpoint {args.ckpt} was made with different --epochs/--batch/--limit: {ck['args']}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        epoch, step_in_epoch, elapsed = ck["epoch"], ck["step_in_epoch"], ck["elapsed"]
        print(f"resumed from {args.ckpt}: epoch {epoch}, step {step_in_epoch}/{steps_per_epoch}, {elapsed:.0f}s so far", flush=True)

    def save():
        tmp = args.ckpt + ".tmp"
        torch.save(
            {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
             "epoch": epoch, "step_in_epoch": step_in_epoch, "elapsed": elapsed, "args": vars(args)},
            tmp,
        )
        os.replace(tmp, args.ckpt)

    os.makedirs(os.path.dirname(args.ckpt) or ".", exist_ok=True)
    while epoch < args.epochs + args.finetune_epochs:
        finetune = epoch >= args.epochs
        if finetune:
            for g in opt.param_groups:
                g["lr"] = args.finetune_lr
        order = np.random.default_rng(args.seed * 1000 + epoch).permutation(len(train_x))
        aug = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        # Replay the augmentation stream up to the resume point so resumed batches are identical.
        for s in range(step_in_epoch):
            n = len(order[s * args.batch : (s + 1) * args.batch])
            torch.randint(0, 5, (n,), generator=aug)
            torch.randint(0, 5, (n,), generator=aug)
        model.train()
        t0, loss_sum, seen = time.time(), 0.0, 0
        while step_in_epoch < steps_per_epoch:
            idx = order[step_in_epoch * args.batch : (step_in_epoch + 1) * args.batch]
            x = torch.from_numpy(train_x[idx]).float().div(255).unsqueeze(1)
            y = torch.from_numpy(train_y[idx].astype(np.int64))
            x = shift_batch(x, aug)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if not finetune:
                sched.step()
            step_in_epoch += 1
            loss_sum += loss.item() * len(idx)
            seen += len(idx)
            if step_in_epoch % args.ckpt_every == 0:
                elapsed += time.time() - t0
                t0 = time.time()
                save()
                print(f"epoch {epoch} step {step_in_epoch}/{steps_per_epoch} loss {loss_sum / seen:.4f} elapsed {elapsed:.0f}s", flush=True)
        elapsed += time.time() - t0
        acc = evaluate(model, test_x, test_y)
        epoch, step_in_epoch = epoch + 1, 0
        save()
        rec = {"epoch": epoch, "finetune": finetune, "train_loss": loss_sum / max(seen, 1), "test_accuracy": acc, "elapsed_s": round(elapsed, 1)}
        print(json.dumps(rec), flush=True)
        with open(args.log, "a") as f:
            f.write(json.dumps(rec) + "\n")

    if args.recalibrate_bn:
        before = evaluate(model, test_x, test_y)
        recalibrate_bn(model, train_x)
        rec = {"recalibrated_bn": True, "test_accuracy_before": before, "test_accuracy": evaluate(model, test_x, test_y)}
        print(json.dumps(rec), flush=True)
        with open(args.log, "a") as f:
            f.write(json.dumps(rec) + "\n")
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    export_onnx(model, args.out)
    acc = evaluate(model, test_x, test_y)
    digest = hashlib.sha256(open(args.out, "rb").read()).hexdigest()
    print(json.dumps({"exported": args.out, "test_accuracy": acc, "sha256": digest, "train_time_s": round(elapsed, 1)}), flush=True)


if __name__ == "__main__":
    main()
