#!/usr/bin/env python3
"""Refit only the final dense layer (the classifier) of an exported model against zonocert's
own certified global bound, and export the result.

Why the classifier alone: on the stage-2 B0 the certified logit movement is dominated by the
last layer, which maps the head's difference zonotope `D` (1,280 units, ~4,096 generators,
most of its width the head swish's independent slope terms) to the logits
(benchmarks/RESULTS.md). `D` does not depend on the classifier, so with `D` exported by
zonocert for a set of pixels (`certify --export-logit-input`), every certified
`Δ(z_c − z_j)` of those pixels is an exact, convex function of the classifier's rows:

    B_p(c, j) = |u·d_p| + Σ_g |u·g_pg| + Σ_k |u_k| e_pk,   u = w_c − w_j,

with `d_p` the centre, `g_pg` the generators and `e_p` the error box (which holds the terms
zonocert carries beside the zonotope, boxed: an upper bound of what zonocert then certifies by
reverse passes). The head's features on the training images do not depend on it either, so the
whole refit is a convex problem: cross-entropy on fixed features plus `λ` times a smooth
maximum of `B` over the exported pixels and every class pair. The probability bound is
`tanh(max_j B/4)` (the softmax's exact worst case), so `B` is what to minimise.

Nothing here certifies anything: the refitted model must be certified by zonocert (all 784
pixels; pixels that were not exported may become the worst).

    python training/refit_classifier.py --model models/efficientnet_b0_mnist_stage2.onnx \\
        --dumps out/refit/li_stage2 --lam 0.02 --steps 600 --tag C1 --out models/efficientnet_b0_mnist_certified.onnx

Seeded (the validation split, the optimiser's start is the given model's classifier);
deterministic on CPU. Appends its record to `training/refit_classifier_log.jsonl`.
"""
import argparse
import glob
import hashlib
import os
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train import load_mnist  # noqa: E402
from train_certified import append_log  # noqa: E402


def classifier(model):
    """The final Gemm node (transB = 1) and its weight and bias initialisers."""
    node = model.graph.node[-1]
    if node.op_type != "Gemm":
        sys.exit(f"{args.model}: the last node is {node.op_type}, not the classifier's Gemm")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("transB", 0) != 1 or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        sys.exit(f"{args.model}: the classifier Gemm must have transB = 1, alpha = beta = 1")
    inits = {i.name: i for i in model.graph.initializer}
    return node, inits[node.input[1]], inits[node.input[2]]


def features(path, node, images, cache):
    """The classifier's input (float32, ONNX Runtime) for every image, cached by model hash."""
    if os.path.exists(cache):
        return np.load(cache)
    model = onnx.load(path)
    model.graph.output.append(onnx.helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, None))
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    out = []
    for i in range(0, len(images), 500):
        x = (images[i:i + 500].astype(np.float32) / 255.0)[:, None]
        out.append(sess.run([node.input[0]], {"input": x})[0])
    f = np.concatenate(out).astype(np.float32)
    np.save(cache, f)
    return f


def load_dumps(pattern):
    """Every exported pixel's `D` at the classifier's input, stacked: pixel ids, centres
    [P, K], generators [P, G, K] (float32, zero-padded to the largest count) and error boxes
    [P, K]."""
    pixels, centres, gens, errs = [], [], [], []
    for p in sorted(glob.glob(os.path.join(pattern, "logit_input_*.npy"))):
        a = np.load(p)
        pixels.append(int(os.path.basename(p)[len("logit_input_"):-4]))
        centres.append(a[0])
        gens.append(a[1:-1])
        errs.append(a[-1])
    if not pixels:
        sys.exit(f"no logit_input_*.npy in {pattern} (zonocert certify --export-logit-input DIR)")
    # A generator with one nonzero entry (a fresh relaxation term) adds |u_k|·|g_k| along any
    # u, exactly as an error-box entry does: folding those in shrinks the products by a third.
    for i, g in enumerate(gens):
        single = (g != 0).sum(1) == 1
        errs[i] = errs[i] + np.abs(g[single]).sum(0)
        gens[i] = g[~single]
    n = max(g.shape[0] for g in gens)
    stacked = np.zeros((len(gens), n, gens[0].shape[1]), dtype=np.float32)
    for i, g in enumerate(gens):
        stacked[i, : g.shape[0]] = g
    return pixels, torch.tensor(np.stack(centres)), torch.tensor(stacked), torch.tensor(np.stack(errs))


def pair_bounds(w, dumps, exact=False):
    """B_p(c, j) for every exported pixel: a tensor [pixels, classes, classes]. `exact`:
    float64 throughout (the reported numbers); otherwise float32 generators (the gradient)."""
    _, centres, gens, errs = dumps
    if exact:
        w = w.double()
        wg = torch.stack([w @ g.double().T for g in gens])
    else:
        wg = torch.einsum("ck,pgk->pcg", w, gens)  # [pixels, classes, generators]
        centres, errs = centres.float(), errs.float()
    wc = centres.to(w.dtype) @ w.T  # [pixels, classes]
    diff_g = (wg[:, :, None, :] - wg[:, None, :, :]).abs().sum(-1)
    diff_c = (wc[:, :, None] - wc[:, None, :]).abs()
    diff_e = ((w[None, :, None, :] - w[None, None, :, :]).abs() * errs.to(w.dtype)[:, None, None, :]).sum(-1)
    return diff_g + diff_c + diff_e


def evaluate(w, b, f, y):
    logits = f @ w.T + b
    top2 = logits.topk(2, dim=1).values
    p = logits.softmax(1)
    return {
        "accuracy": (logits.argmax(1) == y).double().mean().item(),
        "nll": torch.nn.functional.cross_entropy(logits, y).item(),
        "median_margin": (top2[:, 0] - top2[:, 1]).median().item(),
        "median_max_probability": p.max(1).values.median().item(),
    }


def main():
    t0 = time.time()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    model = onnx.load(args.model)
    node, w_init, b_init = classifier(model)
    w0 = torch.tensor(onnx.numpy_helper.to_array(w_init).copy())
    b0 = torch.tensor(onnx.numpy_helper.to_array(b_init).copy())
    sha = hashlib.sha256(open(args.model, "rb").read()).hexdigest()
    os.makedirs(args.cache, exist_ok=True)
    tr_x, tr_y = load_mnist(args.data, "train")
    te_x, te_y = load_mnist(args.data, "test")
    f_tr = torch.tensor(features(args.model, node, tr_x, os.path.join(args.cache, f"train_{sha[:16]}.npy")))
    f_te = torch.tensor(features(args.model, node, te_x, os.path.join(args.cache, f"test_{sha[:16]}.npy")))
    y_tr, y_te = torch.tensor(tr_y.astype(np.int64)), torch.tensor(te_y.astype(np.int64))
    perm = torch.randperm(len(f_tr))
    val, fit = perm[:args.val], perm[args.val:]
    dumps = load_dumps(args.dumps)
    b_start = pair_bounds(w0, dumps, exact=True)
    start = {"bound_max": b_start.max().item(), "val": evaluate(w0, b0, f_tr[val], y_tr[val])}
    print(f"start: max B {start['bound_max']:.4f} over {len(dumps[0])} pixels, val {start['val']}", flush=True)

    w = w0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    opt = torch.optim.Adam([w, b], lr=args.lr)
    # Cosine decay to 0: the problem is convex, so the last iterate settles.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + np.cos(np.pi * min(s, args.steps) / args.steps)))
    for step in range(args.steps + 1):
        idx = fit if args.batch == 0 else fit[torch.randint(len(fit), (args.batch,))]
        ce = torch.nn.functional.cross_entropy(f_tr[idx] @ w.T + b, y_tr[idx])
        bounds = pair_bounds(w, dumps)
        smooth = args.tau * torch.logsumexp(bounds.flatten() / args.tau, 0)
        loss = ce + args.lam * smooth
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % args.log_every == 0:
            with torch.no_grad():
                v = evaluate(w, b, f_tr[val], y_tr[val])
            print(
                f"step {step:5d} ce {ce.item():.4f} max B {bounds.max().item():.4f} smooth {smooth.item():.4f} "
                f"val acc {v['accuracy']:.4f} nll {v['nll']:.4f} margin {v['median_margin']:.2f}",
                flush=True,
            )

    w, b = w.detach(), b.detach()
    b_end = pair_bounds(w, dumps, exact=True)
    rec = {
        "model": args.model,
        "model_sha256": sha,
        "dumps": args.dumps,
        "pixels": dumps[0],
        "lam": args.lam,
        "tau": args.tau,
        "steps": args.steps,
        "lr": args.lr,
        "batch": args.batch,
        "seed": args.seed,
        "start": start,
        "bound_max": b_end.max().item(),
        "worst_pixel": dumps[0][int(b_end.amax((1, 2)).argmax())],
        "val": evaluate(w, b, f_tr[val], y_tr[val]),
        "test": evaluate(w, b, f_te, y_te),
        "seconds": round(time.time() - t0, 1),
    }
    if args.out:
        w_init.CopyFrom(onnx.numpy_helper.from_array(w.numpy().astype(np.float32), w_init.name))
        b_init.CopyFrom(onnx.numpy_helper.from_array(b.numpy().astype(np.float32), b_init.name))
        tmp = args.out + ".tmp"
        onnx.save(model, tmp)
        os.replace(tmp, args.out)
        rec["out"] = args.out
        rec["out_sha256"] = hashlib.sha256(open(args.out, "rb").read()).hexdigest()
    append_log(args.log, args.tag, rec)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="exported ONNX model whose classifier is refitted")
    ap.add_argument("--dumps", required=True, help="directory of `certify --export-logit-input`")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist"))
    ap.add_argument("--lam", type=float, default=0.02, help="weight of the smooth maximum of B")
    ap.add_argument("--tau", type=float, default=0.05, help="temperature of the smooth maximum")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--batch", type=int, default=0, help="images per cross-entropy step (0: every fitted image)")
    ap.add_argument("--val", type=int, default=5000, help="training images held out to choose λ")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--cache", default="out/refit", help="feature cache directory")
    ap.add_argument("--tag", default="refit")
    ap.add_argument("--log", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "refit_classifier_log.jsonl"))
    ap.add_argument("--out", help="write the refitted model here")
    args = ap.parse_args()
    main()
