#!/usr/bin/env python3
"""Train a standard torchvision EfficientNet-B0 (1-channel stem, normalisation in the graph,
exactly as `train.py`) against zonocert's own global bound (`global_bound.py`).

Only weights, biases and BatchNorm parameters/statistics are free; the architecture is
`train.build_model`. The recipe (each part measured or argued in the log and the notes):

1. Structured initialisation: every squeeze-excite `fc2` weight zero (constant gates, so the
   product term x * D_s is 0) and every residual block's last BatchNorm scale zero (the block
   starts as the identity). The global bound starts near 1e3 instead of ~1e94. By default the
   `fc2` weights stay zero (`--freeze-gates 1`): trained gates bring the product term back and
   with it ~80 orders of magnitude (measured: NaN, i.e. f64 overflow, after two steps).
2. Cross-entropy + lambda * relu(log(bound) - log(target)); lambda is 0 for `--warmup-steps`,
   then grows linearly to `--lam` over `--ramp-steps`. `bound` is a smooth maximum (log-sum-exp
   of the log bounds) over `--pixels-per-step` random pixels of the interval differential
   bound on max |delta(z_c - z_j)|.
3. BatchNorm (`--bn-bound`): `batch` (default) keeps BatchNorm in training mode and computes
   the bound with the very batch statistics the forward pass normalised with, so the bound's
   gradient sees every change the step makes; at `--freeze-frac` of the run the statistics are
   re-estimated on clean training images and frozen, and the rest of the run fine-tunes the
   network that is certified (BatchNorm as the affine map of its running statistics).
   `running` is the earlier recipe: statistics frozen when the warm-up ends.

Optimiser: Adam (default) or SGD-Nesterov, learning rate warmed up linearly over `--lr-warmup`
steps, then cosine to zero. `--time-limit S` measures the first `--lr-warmup` steps and fixes
the number of steps so the run ends within S seconds; the log records the number chosen, and a
rerun with that `--steps` and no time limit has the same schedule.

Resumable at step granularity (`--resume`; the data order is a pure function of seed and step)
and runs unchanged on CPU or GPU (`--device`). Every run appends its configuration, periodic
evaluations and its end to `--log` (JSON lines), failures included.

    python training/train_certified.py --steps 2000 --resume            # resumable CPU run
    python training/train_certified.py --steps 2000 --device cuda       # the same on a GPU
"""
import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from global_bound import F32, logit_difference_bounds, max_bound_all_pixels, record_batch_statistics  # noqa: E402
from train import build_model, export_onnx, load_mnist, recalibrate_bn, shift_batch  # noqa: E402


def structured_init(model, freeze_gates):
    """Constant squeeze-excite gates and identity residual blocks (see the module doc). With
    `freeze_gates` the gates' `fc2` weights stay zero (a weight choice within the standard
    architecture: each gate is then sigmoid of its trained bias, a per-channel scale)."""
    for m in model.modules():
        if isinstance(m, torchvision.ops.misc.SqueezeExcitation):
            nn.init.zeros_(m.fc2.weight)
            m.fc2.weight.requires_grad_(not freeze_gates)
        if isinstance(m, torchvision.models.efficientnet.MBConv) and m.use_res_connect:
            last_bn = m.block[-1][1]
            nn.init.zeros_(last_bn.weight)


def freeze_bn_statistics(model):
    """BatchNorm as the affine map of its running statistics from now on."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def evaluate(model, images, labels, device, batch=1000):
    """Accuracy, median max-probability and NLL on (images, labels), eval mode."""
    was_training = model.training
    model.eval()
    correct, nll, maxp = 0, 0.0, []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i : i + batch]).float().div(255).unsqueeze(1).to(device)
            y = torch.from_numpy(labels[i : i + batch].astype(np.int64)).to(device)
            z = model(x)
            correct += (z.argmax(1) == y).sum().item()
            nll += F.cross_entropy(z, y, reduction="sum").item()
            maxp.append(z.softmax(1).max(1).values.cpu())
    model.train(was_training)
    return correct / len(images), float(torch.cat(maxp).median()), nll / len(images)


def append_log(path, run_id, rec):
    """Prints one JSON-lines record of run `run_id` and appends it to the log at `path`."""
    rec = {"run": run_id, **rec}
    print(json.dumps(rec), flush=True)
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def save_checkpoint(path, model, opt, step, elapsed, run_id, args):
    """Writes a resumable checkpoint atomically (a temporary file, then a rename)."""
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed, "run": run_id, "args": vars(args)}, tmp)
    os.replace(tmp, path)


def scheduled_lr(step, base, warmup, steps):
    """Linear warm-up over `warmup` steps, then cosine to zero at `steps`."""
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def training_batch(train_x, train_y, step, batch, seed, device):
    """The batch of `step`: a pure function of seed and step (so a resumed run sees the same
    data), shifted by up to 2 pixels."""
    epoch, k = divmod(step, len(train_x) // batch)
    order = np.random.default_rng(seed * 1000 + epoch).permutation(len(train_x))
    idx = order[k * batch : (k + 1) * batch]
    aug = torch.Generator().manual_seed(seed * 100003 + step)
    x = shift_batch(torch.from_numpy(train_x[idx]).float().div(255).unsqueeze(1), aug).to(device)
    return x, torch.from_numpy(train_y[idx].astype(np.int64)).to(device)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mnist", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist"))
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--time-limit", type=float, default=0.0, help="seconds; >0 fixes --steps from the measured step time")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--opt", choices=["adam", "sgd"], default="adam")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-warmup", type=int, default=50, help="steps of linear learning-rate warm-up")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--warmup-steps", type=int, default=0, help="cross-entropy only before the bound term starts")
    p.add_argument("--ramp-steps", type=int, default=300, help="steps over which lambda grows from 0 to --lam")
    p.add_argument("--lam", type=float, default=1.0, help="final weight of log(bound)")
    p.add_argument("--target", type=float, default=0.04, help="no pressure below this logit-difference bound")
    p.add_argument("--pixels-per-step", type=int, default=16)
    p.add_argument("--bound-form", choices=["interval", "symbol", "zonotope"], default="interval", help="see global_bound.logit_difference_bounds")
    p.add_argument("--bound-f32", action="store_true", help="train against the bound on a float32 execution (zonocert --semantics f32, --ulp 4)")
    p.add_argument("--bound-gens", type=int, default=32, help="generator rows per pixel of the zonotope form")
    p.add_argument("--bound-dtype", choices=["float64", "float32"], default="float64", help="dtype of the bound in the loss (float32: faster on GPUs)")
    p.add_argument("--bn-bound", choices=["batch", "running"], default="batch")
    p.add_argument("--freeze-frac", type=float, default=0.85, help="with --bn-bound batch: when the statistics freeze")
    p.add_argument("--freeze-gates", type=int, default=1, help="1: squeeze-excite fc2 weights stay zero (constant gates)")
    p.add_argument("--eval-every", type=int, default=50)
    p.add_argument("--eval-images", type=int, default=1000, help="test images for the periodic evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--ckpt", default="training/checkpoint_cert.pt")
    p.add_argument("--ckpt-every", type=int, default=25)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--init", default="", help="start from these weights (a state_dict) instead of the structured initialisation")
    p.add_argument("--weights", default="", help="also save the final state_dict (weights only) here")
    p.add_argument("--out", default="models/efficientnet_b0_mnist_certified.onnx", help="ONNX export; '' skips it")
    p.add_argument("--log", default="training/train_certified_log.jsonl")
    p.add_argument("--tag", default="", help="a name for this run in the log")
    args = p.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    train_x, train_y = load_mnist(args.mnist, "train")
    test_x, test_y = load_mnist(args.mnist, "test")
    model = build_model(0.0, 0.0)
    structured_init(model, args.freeze_gates)
    if args.init:
        model.load_state_dict(torch.load(args.init, map_location="cpu"))
    model.to(device)
    batch_stats = record_batch_statistics(model)
    params = [q for q in model.parameters() if q.requires_grad]
    if args.opt == "adam":
        opt = torch.optim.Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, nesterov=True, weight_decay=args.weight_decay)
    step, elapsed = 0, 0.0
    run_id = args.tag or time.strftime("%Y%m%dT%H%M%S")

    def log(rec):
        append_log(args.log, run_id, rec)

    if args.resume and os.path.exists(args.ckpt):
        ck = torch.load(args.ckpt, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, elapsed, run_id = ck["step"], ck["elapsed"], ck.get("run", run_id)
        args.steps = ck["args"].get("steps", args.steps)
        log({"event": "resumed", "step": step, "elapsed_s": round(elapsed, 1)})
    else:
        log({"event": "start", "config": vars(args), "torch": torch.__version__, "torchvision": torchvision.__version__, "device": str(device)})

    def save():
        save_checkpoint(args.ckpt, model, opt, step, elapsed, run_id, args)

    def freeze_step():
        return args.warmup_steps if args.bn_bound == "running" else int(args.freeze_frac * args.steps)

    def probe_pixels():
        return list(range(0, 784, 13))

    pixel_gen = torch.Generator().manual_seed(args.seed + 1)
    for _ in range(step):
        torch.randint(0, 784, (args.pixels_per_step,), generator=pixel_gen)
    frozen = step > freeze_step()
    if frozen:
        freeze_bn_statistics(model)
    try:
        t0 = time.time()
        t_probe = None
        while step < args.steps:
            if args.time_limit > 0 and step == 5:
                t_probe = time.time()
            if args.time_limit > 0 and step == args.lr_warmup and t_probe is not None:
                per_step = (time.time() - t_probe) / (args.lr_warmup - 5)
                # evaluations every --eval-every steps and the end (full test set, all pixels) cost extra
                budget = args.time_limit - (time.time() - t0) - min(40.0, 0.1 * args.time_limit)
                args.steps = max(step + 1, min(args.steps, step + int(0.92 * budget / (per_step * (1 + 1.5 / args.eval_every)))))
                log({"event": "steps_fixed", "steps": args.steps, "seconds_per_step": round(per_step, 4)})
            if step == freeze_step() and not frozen:
                recalibrate_bn(model, train_x[:5000])
                model.train()
                freeze_bn_statistics(model)
                frozen = True
                batch_stats.clear()
                log({"event": "bn_frozen", "step": step})
            lr = scheduled_lr(step, args.lr, args.lr_warmup, args.steps)
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = training_batch(train_x, train_y, step, args.batch, args.seed, device)
            ce = F.cross_entropy(model(x), y)
            pixels = torch.randint(0, 784, (args.pixels_per_step,), generator=pixel_gen).tolist()
            lam = 0.0 if step < args.warmup_steps else args.lam * min(1.0, (step - args.warmup_steps + 1) / max(args.ramp_steps, 1))
            loss = ce
            log_bound = torch.tensor(float("nan"))
            bound_used = args.bn_bound == "batch" or frozen
            if lam > 0 and bound_used:
                bounds = logit_difference_bounds(
                    model,
                    pixels,
                    stats=None if frozen else batch_stats,
                    form=args.bound_form,
                    dtype=getattr(torch, args.bound_dtype),
                    gens=args.bound_gens,
                    f32=F32() if args.bound_f32 else None,
                )
                log_bound = torch.logsumexp(bounds.clamp_min(1e-300).log(), 0)
                loss = ce + lam * F.relu(log_bound - math.log(args.target)).float()
            if not torch.isfinite(loss):
                log({"event": "non_finite_loss_skipped", "step": step, "ce": ce.item(), "log_bound": log_bound.item()})
                loss = ce
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
                trace = []
                with torch.no_grad():
                    running = logit_difference_bounds(model, probe_pixels(), trace=trace, form=args.bound_form, gens=args.bound_gens).max().item()
                if not frozen:
                    model.train()
                else:
                    freeze_bn_statistics(model)
                log({"step": step, "ce": round(ce.item(), 4), "lambda": lam, "lr": lr, "log10_bound_sampled": log_bound.item() / math.log(10),
                     "log10_bound_running_stats": math.log10(max(running, 1e-300)), "stage_log10_max_D": [round(t[0], 2) for t in trace],
                     "stage_log10_max_value_radius": [round(t[1], 2) for t in trace],
                     "eval_accuracy": acc, "eval_median_max_prob": med, "eval_nll": nll, "elapsed_s": round(elapsed + time.time() - t0, 1)})
    except Exception as e:  # the log records failures too
        log({"event": "failed", "step": step, "error": repr(e)})
        raise
    elapsed += time.time() - t0
    save()
    model.eval()
    acc, med, nll = evaluate(model, test_x, test_y, device)
    b_interval, b_symbol = max_bound_all_pixels(model, "interval"), max_bound_all_pixels(model, "symbol")
    if args.weights:
        tmp = args.weights + ".tmp"
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, args.weights)
    rec = {"event": "end", "step": step, "test_accuracy": acc, "test_median_max_prob": med, "test_nll": nll,
           "training_bound_max_logit_diff_all_pixels": b_interval, "symbol_bound_max_logit_diff_all_pixels": b_symbol, "elapsed_s": round(elapsed, 1), "weights": args.weights}
    if args.out:
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        export_onnx(model.cpu(), args.out)
        rec.update(exported=args.out, sha256=hashlib.sha256(open(args.out, "rb").read()).hexdigest())
    log(rec)


if __name__ == "__main__":
    main()
