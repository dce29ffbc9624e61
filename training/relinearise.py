#!/usr/bin/env python3
"""Re-express a `train_linearised.py` model so that every swish linearised by an offset is
linearised by a small signal instead, computing the same function (to within ~1e-9 relative),
and export it.

Why: an offset `M` keeps swish(v + M) linear only while |v| stays well below `M` over the
whole input domain *as zonocert bounds it*. Once a convolution-level swish is nonlinear
(`--nonlinear s2e,...`), the global region analysis' value ranges after it reach 10^3-10^4,
past any offset of 100, so every later "linear" swish becomes an independent unknown slope in
[-0.1, 1.1] and the difference bound grows by L1 norms through the rest of the trunk
(benchmarks/RESULTS.md, section "A convolution-level nonlinearity"). A small signal
swish(a v) = a v / 2 + O(a^2 v^2) stays linear for |v| << 1/a, i.e. for any range the analysis
can produce when a = 1e-12.

The rewrite, per offset site (BatchNorm `bn` -> swish -> [constant squeeze-excite gate] ->
consumer convolution `conv` -> BatchNorm `bn2`):

* `bn`'s shift loses the offset and its scale and shift are multiplied by `a`;
* `conv`'s weights are multiplied by 2 / a (the swish's slope at 0 is 1/2);
* `bn2`'s running mean moves by the constant the offset used to contribute, measured exactly
  (in float64, on real images) as the difference of `conv`'s outputs before and after; the
  script checks that it is a constant (a padded convolution over several positions would make
  it position-dependent: such sites were never offset sites).

    python training/relinearise.py --ckpt out/lin/CB.pt --out out/lin/CB_small.onnx
"""
import argparse
import copy
import hashlib
import os
import sys

import torch
from torchvision.ops.misc import Conv2dNormActivation

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import build_model, export_onnx, load_mnist  # noqa: E402
from train_certified import append_log  # noqa: E402
from train_linearised import finalise, structure, swish_sites  # noqa: E402


def consumer_of(model, bn):
    """The convolution and BatchNorm that read the swish after BatchNorm `bn` (through the
    block's constant squeeze-excite gate where there is one): the block's next
    convolution-norm-activation."""
    for stage in model[1].features[1:8]:
        layers = [layer for layer in stage[0].block if isinstance(layer, Conv2dNormActivation)]
        for here, after in zip(layers, layers[1:]):
            if here[1] is bn:
                return after[0], after[1]
    raise ValueError("no convolution reads this swish (the stem and head sites are never offset sites)")


def load_linearised(ckpt_path):
    """The trained model of a `train_linearised.py` checkpoint, finalised (plain torchvision
    weights), with how each swish site was linearised, the run's arguments and its name."""
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    args = ck["args"]
    args = argparse.Namespace(**args) if isinstance(args, dict) else args
    model = build_model(0.0, 0.0)
    nonlinear = [s for s in args.nonlinear.split(",") if s]
    modes = structure(model, args.offset, args.alpha, nonlinear, args.bn_eps)
    model.load_state_dict(ck["model"])
    finalise(model)
    model.eval()
    return model, modes, args, ck.get("run", "unknown")


def conv_outputs(model, conv, images):
    """What `conv` computes when `model` runs on `images`."""
    out = []
    hook = conv.register_forward_hook(lambda m, i, o: out.append(o.detach().clone()))
    with torch.no_grad():
        model(images)
    hook.remove()
    return out[0]


def relinearise(model, modes, offset, alpha, images):
    """Returns a float64 copy of `model` with every offset site rewritten (module doc)."""
    old = copy.deepcopy(model).double()
    new = copy.deepcopy(model).double()
    images = images.double()
    old_sites, new_sites = swish_sites(old), swish_sites(new)
    report = {}
    for name, mode in modes.items():
        if mode != "offset":
            continue
        conv_old, _ = consumer_of(old, old_sites[name])
        bn = new_sites[name]
        conv_new, bn2 = consumer_of(new, bn)
        with torch.no_grad():
            bn.bias.sub_(offset)
            bn.weight.mul_(alpha)
            bn.bias.mul_(alpha)
            conv_new.weight.mul_(2.0 / alpha)
        u_old = conv_outputs(old, conv_old, images)
        u_new = conv_outputs(new, conv_new, images)
        diff = (u_old - u_new).transpose(0, 1).reshape(u_old.shape[1], -1)
        constant = diff.mean(dim=1)
        spread = (diff - constant[:, None]).abs().max().item()
        scale = u_old.abs().max().item()
        if spread > 1e-6 * max(scale, 1.0):
            raise SystemExit(f"site {name}: the offset's contribution is not a constant (spread {spread:.3g}, scale {scale:.3g})")
        with torch.no_grad():
            bn2.running_mean.sub_(constant)
        report[name] = {"offset_term_max": constant.abs().max().item(), "spread": spread}
    return new, report


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a train_linearised.py checkpoint")
    p.add_argument("--mnist", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist"))
    p.add_argument("--alpha", type=float, default=1e-12, help="the small signal's scale at the rewritten sites")
    p.add_argument("--check-images", type=int, default=1000, help="test images on which both forms are compared (float64)")
    p.add_argument("--weights", default="", help="also save the rewritten state_dict (float32) here")
    p.add_argument("--out", required=True, help="ONNX export")
    p.add_argument("--log", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_linearised_log.jsonl"),
                   help="appends one record (run '<the checkpoint's run>-small') here; '' skips it")
    args = p.parse_args()

    torch.set_num_threads(2)
    model, modes, train_args, run = load_linearised(args.ckpt)
    test_x, test_y = load_mnist(args.mnist, "test")
    train_x, _ = load_mnist(args.mnist, "train")
    test_x = torch.from_numpy(test_x.copy()).double().div(255).unsqueeze(1)
    test_y = torch.from_numpy(test_y.astype("int64"))
    train_x = torch.from_numpy(train_x[:256].copy()).double().div(255).unsqueeze(1)
    new, report = relinearise(model, modes, train_args.offset, args.alpha, train_x)
    for name, r in report.items():
        print(f"{name}: offset term up to {r['offset_term_max']:.4g}, spread {r['spread']:.3g}")
    ref_model = model.double()
    with torch.no_grad():
        ref = torch.cat([ref_model(test_x[i : i + 250]) for i in range(0, args.check_images, 250)])
        got = torch.cat([new(test_x[i : i + 250]) for i in range(0, args.check_images, 250)])
    test_y = test_y[: args.check_images]
    rel = ((ref - got).abs().max() / ref.abs().max()).item()
    agree = (ref.argmax(1) == got.argmax(1)).float().mean().item()
    acc = (got.argmax(1) == test_y).float().mean().item()
    print(f"float64 logits, {args.check_images} test images: largest difference {rel:.3g} of the largest logit; "
          f"predictions agree on {agree:.4%}; accuracy {acc:.4%}")
    if rel > 1e-6:
        raise SystemExit("the rewritten model does not compute the same function")
    new = new.float()
    if args.weights:
        torch.save(new.state_dict(), args.weights)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    tmp = args.out + ".tmp"
    export_onnx(new, tmp)
    os.replace(tmp, args.out)
    sha = hashlib.sha256(open(args.out, "rb").read()).hexdigest()
    print(f"wrote {args.out} sha256 {sha}")
    if args.log:
        append_log(args.log, f"{run}-small", {"event": "relinearised", "ckpt": args.ckpt, "alpha": args.alpha, "sites": report,
                                               "check_images": args.check_images, "largest_relative_logit_difference": rel,
                                               "prediction_agreement": agree, "check_accuracy": acc, "exported": args.out, "sha256": sha})


if __name__ == "__main__":
    main()
