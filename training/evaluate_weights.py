#!/usr/bin/env python3
"""Evaluate saved weights (a state_dict from `train_certified.py --weights`, or a checkpoint)
on all 10,000 MNIST test images and bound them with `global_bound.py` over all 784 pixels;
optionally export the ONNX model. Appends one JSON line per model to `--log`.

    python training/evaluate_weights.py W.pt [W2.pt ...] --onnx-dir out/models --note "..."
"""
import argparse
import hashlib
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from global_bound import max_bound_all_pixels  # noqa: E402
from train import build_model, export_onnx, load_mnist  # noqa: E402
from train_certified import evaluate  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", nargs="+")
    p.add_argument("--mnist", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist"))
    p.add_argument("--onnx-dir", default="", help="export <name>.onnx here")
    p.add_argument("--log", default="training/train_certified_log.jsonl")
    p.add_argument("--note", default="")
    args = p.parse_args()
    test_x, test_y = load_mnist(args.mnist, "test")
    for path in args.weights:
        state = torch.load(path, map_location="cpu", weights_only=False)
        model = build_model(0.0, 0.0)
        model.load_state_dict(state["model"] if "model" in state else state)
        model.eval()
        acc, med, nll = evaluate(model, test_x, test_y, torch.device("cpu"))
        bounds = {f: max_bound_all_pixels(model, f) for f in ("interval", "symbol")}
        rec = {"event": "evaluated", "weights": os.path.basename(path), "weights_sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
               "test_accuracy": acc, "test_median_max_prob": med, "test_nll": nll,
               "training_bound_max_logit_diff_all_pixels": bounds["interval"], "symbol_bound_max_logit_diff_all_pixels": bounds["symbol"], "note": args.note}
        if args.onnx_dir:
            os.makedirs(args.onnx_dir, exist_ok=True)
            out = os.path.join(args.onnx_dir, os.path.splitext(os.path.basename(path))[0] + ".onnx")
            export_onnx(model, out)
            rec.update(onnx=out, onnx_sha256=hashlib.sha256(open(out, "rb").read()).hexdigest())
        print(json.dumps(rec), flush=True)
        with open(args.log, "a") as f:
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
