#!/usr/bin/env python3
"""Train a standard torchvision EfficientNet-B0 (1-channel stem, normalisation in the graph,
exactly `train.build_model`) whose weights make most of it linear over the whole input domain:
an experiment towards a global certificate (issue 17; results and their reading in
benchmarks/RESULTS.md, section "A B0 linear by construction"). Not yet a certified model.

The global bound of a normally trained B0 is ~1e40 because every one of its ~50 nonlinear
steps multiplies what the differential analysis cannot keep exact. Here the weights, within
the standard architecture, leave only the swishes named in `--nonlinear` nonlinear:

* every residual block is the identity: its last BatchNorm has scale and shift 0 (frozen), so
  the branch adds exactly 0 and the block passes `x` and `D = x' - x` through unchanged;
* every squeeze-excite gate is a constant: `fc2`'s weights are 0 (frozen), the gate is
  sigmoid(fc2.bias), a per-channel scale, so the product term `x * D_s` is exactly 0;
* a swish that no padded convolution follows works in its linear regime by an offset: the
  BatchNorm before it has `--offset M` added to its shift, so its input lies near M, where
  swish(v) = v * sigmoid(v) has slope 1 to within ~M e^-M; the next BatchNorm removes the
  offset (it normalises). An offset cannot be used where a depthwise convolution over more than
  one position follows: its zero padding turns the offset into a position-dependent pattern
  that swamps the signal (measured: 99 % of those BatchNorms' input variance);
* there (stem, expansions of stages 2-5) a small signal instead: the BatchNorm's scale and
  shift are reparametrised as `--alpha` times trained parameters, so swish(a v) ~ a v / 2 to
  within a relative a |v| / 2. BatchNorm trains with eps `--bn-eps` (the inputs there have
  variance ~alpha^2); `finalise` converts every scale to the architecture's eps (1e-5).

Training: cross-entropy on shifted training images, Adam with linear warm-up and cosine decay,
BatchNorm on batch statistics, re-estimated on clean training images at the end (training on
frozen statistics diverges with offsets: a weight step moves a constant by M times as much).
Identity blocks are skipped in training (they compute exactly their input) and exported as
they are. Resumable (`--resume`; the data order is a pure function of seed and step); every
run appends its configuration, evaluations and end to `--log` (JSON lines).

    python training/train_linearised.py --steps 200 --lr-warmup 20 --nonlinear s7e,head --alpha 1e-5 --out out/lin/A5.onnx
"""
import argparse
import hashlib
import os
import sys
import time
import types

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.parametrize as parametrize
import torchvision
from torchvision.ops.misc import Conv2dNormActivation, SqueezeExcitation

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import build_model, export_onnx, load_mnist, recalibrate_bn  # noqa: E402
from train_certified import append_log, evaluate, freeze_bn_statistics, save_checkpoint, scheduled_lr, training_batch  # noqa: E402


def swish_sites(model):
    """Every swish of the trunk by name, with the BatchNorm in front of it: `stem`, `head`, and
    `s<stage>e` / `s<stage>d` for the expansion / depthwise swish of a stage's first block (the
    only blocks that are not identities). Squeeze-excite swishes feed a zero weight and are
    not listed."""
    net = model[1]
    sites = {"stem": net.features[0][1], "head": net.features[8][1]}
    for s in range(1, 8):
        block = net.features[s][0]
        assert not block.use_res_connect
        for layer in block.block:
            if isinstance(layer, Conv2dNormActivation) and layer[-1].__class__ is nn.SiLU:
                kind = "d" if layer[0].groups > 1 else "e"
                sites[f"s{s}{kind}"] = layer[1]
    return sites


class Scaled(nn.Module):
    """A fixed factor on a parameter (a reparametrisation: the optimiser sees the parameter
    at its usual scale while the network uses it times `factor`)."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, t):
        return self.factor * t


def followed_by_spatial_conv(name):
    """Whether a depthwise convolution over more than one position follows this swish: its zero
    padding would turn an offset into a position-dependent pattern that swamps the signal
    (measured: BatchNorm inputs 99 % pattern), so such swishes are linearised by a small signal
    instead (stage 5's expansion feeds a 5x5 depthwise over 2x2 positions; stages 6 and 7 end
    at one position)."""
    return name in ("stem", "s2e", "s3e", "s4e", "s5e")


def structure(model, offset, alpha, nonlinear, eps):
    """Applies the construction of the module doc to freshly built weights. Returns the swish
    sites and how each is linearised ("offset", "small" or "nonlinear")."""
    net = model[1]
    for m in model.modules():
        if isinstance(m, SqueezeExcitation):
            nn.init.zeros_(m.fc2.weight)
            m.fc2.weight.requires_grad_(False)
            for q in m.fc1.parameters():
                q.requires_grad_(False)  # feeds a zero weight: no gradient, no effect
        if isinstance(m, nn.BatchNorm2d):
            m.standard_eps = m.eps  # what `finalise` converts back to (torchvision's B0: 1e-5)
            m.eps = eps
    for stage in net.features[1:8]:
        for block in stage:
            if block.use_res_connect:
                last_bn = block.block[-1][1]
                nn.init.zeros_(last_bn.weight)
                nn.init.zeros_(last_bn.bias)
                for q in block.parameters():
                    q.requires_grad_(False)
    sites = swish_sites(model)
    unknown = set(nonlinear) - set(sites)
    if unknown:
        raise SystemExit(f"--nonlinear: unknown swish {sorted(unknown)}; known: {sorted(sites)}")
    modes = {}
    for name, bn in sites.items():
        if name in nonlinear:
            modes[name] = "nonlinear"
        elif followed_by_spatial_conv(name):
            # swish(a v) = a v / 2 + a^2 v^2 / 4 + ...: linear to within a relative a |v| / 2
            parametrize.register_parametrization(bn, "weight", Scaled(alpha))
            parametrize.register_parametrization(bn, "bias", Scaled(alpha))
            modes[name] = "small"
        else:
            with torch.no_grad():
                bn.bias.add_(offset)
            modes[name] = "offset"
    return modes


def finalise(model):
    """Plain torchvision weights computing the same function: the reparametrisations folded in
    and every BatchNorm's scale converted to the architecture's own eps, so the state_dict loads
    into `train.build_model` and computes what the export computes."""
    for m in model.modules():
        if parametrize.is_parametrized(m):
            for name in list(m.parametrizations.keys()):
                parametrize.remove_parametrizations(m, name, leave_parametrized=True)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and hasattr(m, "standard_eps") and m.eps != m.standard_eps:
                m.weight.mul_(torch.sqrt(m.running_var + m.standard_eps) / torch.sqrt(m.running_var + m.eps))
                m.eps = m.standard_eps


def skip_identities(model, on):
    """Identity blocks compute exactly their input; skip them in training (`on`) and restore
    the module's own forward for evaluation by zonocert-equivalent code paths and export."""
    for stage in model[1].features[1:8]:
        for block in stage:
            if block.use_res_connect:
                if on:
                    block.forward = types.MethodType(lambda self, x: x, block)
                elif "forward" in block.__dict__:
                    del block.forward


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mnist", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist"))
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--lr-warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--offset", type=float, default=32.0, help="added to the shift of the BatchNorm before a linearised swish that no padded convolution follows")
    p.add_argument("--alpha", type=float, default=1e-3, help="scale of the BatchNorm before a linearised swish that a padded convolution follows")
    p.add_argument("--bn-eps", type=float, default=1e-32, help="BatchNorm eps while training (small-signal inputs have variance ~alpha^2)")
    p.add_argument("--nonlinear", default="stem,s2e,head", help="comma-separated swishes left nonlinear (see swish_sites)")
    p.add_argument("--freeze-frac", type=float, default=1.0, help="when BatchNorm statistics are re-estimated and frozen (1: at the end, no training after)")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-images", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--ckpt", default="training/checkpoint_linearised.pt")
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--weights", default="", help="also save the final state_dict here")
    p.add_argument("--out", default="models/efficientnet_b0_mnist_certified.onnx", help="ONNX export; '' skips it")
    p.add_argument("--log", default="training/train_linearised_log.jsonl")
    p.add_argument("--tag", default="")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    train_x, train_y = load_mnist(args.mnist, "train")
    test_x, test_y = load_mnist(args.mnist, "test")
    if args.resume and os.path.exists(args.ckpt):
        # The weights' structure is the checkpoint's, whatever this command line says.
        saved = torch.load(args.ckpt, map_location="cpu", weights_only=False)["args"]
        for key in ("offset", "alpha", "bn_eps", "nonlinear", "steps"):
            setattr(args, key, saved[key])
    model = build_model(0.0, 0.0)
    nonlinear = [s for s in args.nonlinear.split(",") if s]
    modes = structure(model, args.offset, args.alpha, nonlinear, args.bn_eps)
    model.to(device)
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    step, elapsed = 0, 0.0
    run_id = args.tag or time.strftime("%Y%m%dT%H%M%S")

    def log(rec):
        append_log(args.log, run_id, rec)

    if args.resume and os.path.exists(args.ckpt):
        ck = torch.load(args.ckpt, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, elapsed, run_id = ck["step"], ck["elapsed"], ck.get("run", run_id)
        log({"event": "resumed", "step": step, "elapsed_s": round(elapsed, 1)})
    else:
        log({"event": "start", "config": vars(args), "torch": torch.__version__, "torchvision": torchvision.__version__,
             "device": str(device), "swishes": modes, "trainable_parameters": sum(q.numel() for q in params)})

    def save():
        save_checkpoint(args.ckpt, model, opt, step, elapsed, run_id, args)

    freeze_at = int(args.freeze_frac * args.steps) if args.freeze_frac < 1 else args.steps + 1
    skip_identities(model, True)
    model.train()
    frozen = step > freeze_at
    if frozen:
        freeze_bn_statistics(model)
    try:
        t0 = time.time()
        while step < args.steps:
            if step == freeze_at and not frozen:
                recalibrate_bn(model, train_x[:10000])
                model.train()
                freeze_bn_statistics(model)
                frozen = True
                log({"event": "bn_frozen", "step": step})
            lr = scheduled_lr(step, args.lr, args.lr_warmup, args.steps)
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = training_batch(train_x, train_y, step, args.batch, args.seed, device)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            step += 1
            if step % args.ckpt_every == 0 or step == args.steps:
                elapsed += time.time() - t0
                t0 = time.time()
                save()
            if step % args.eval_every == 0 or step == args.steps:
                acc, med, nll = evaluate(model, test_x[: args.eval_images], test_y[: args.eval_images], device)
                if frozen:
                    freeze_bn_statistics(model)
                log({"step": step, "ce": round(loss.item(), 4), "lr": lr, "eval_accuracy": acc, "eval_median_max_prob": med,
                     "eval_nll": round(nll, 4), "elapsed_s": round(elapsed + time.time() - t0, 1)})
    except Exception as e:  # the log records failures too
        log({"event": "failed", "step": step, "error": repr(e)})
        raise
    elapsed += time.time() - t0
    if not frozen:
        # --freeze-frac 1: BatchNorm trained on batch statistics to the end, re-estimated now
        recalibrate_bn(model, train_x[:10000])
        log({"event": "bn_recalibrated_at_end", "step": step})
    save()
    skip_identities(model, False)
    finalise(model)
    model.eval()
    acc, med, nll = evaluate(model, test_x, test_y, device)
    if args.weights:
        tmp = args.weights + ".tmp"
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, args.weights)
    rec = {"event": "end", "step": step, "test_accuracy": acc, "test_median_max_prob": med, "test_nll": nll,
           "elapsed_s": round(elapsed, 1), "weights": args.weights}
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        tmp = args.out + ".tmp"
        export_onnx(model.cpu(), tmp)
        os.replace(tmp, args.out)
        rec.update(exported=args.out, sha256=hashlib.sha256(open(args.out, "rb").read()).hexdigest())
    log(rec)


if __name__ == "__main__":
    main()
