#!/bin/bash
# Runs the certified-training configurations below side by side on one GPU, each for SECONDS
# (train_certified.py --time-limit), and leaves in OUT each run's final weights
# (<tag>.pt, a state_dict), all runs' JSON-lines logs in sweep_log.jsonl and the processes'
# output in sweep_stdout.txt. DEVICE may be "cpu" for a smoke test.
#
#     bash training/gpu_sweep.sh OUT MNIST_DIR SECONDS [DEVICE]
set -u
out=$1 mnist=$2 secs=$3 device=${4:-cuda}
mkdir -p "$out"
common=(--device "$device" --mnist "$mnist" --time-limit "$secs" --steps 100000 --eval-every 100
        --ckpt-every 1000000 --out "" --threads 2 --pixels-per-step 32)
run() {
    local tag=$1; shift
    python3 training/train_certified.py "${common[@]}" --tag "$tag" --ckpt "/tmp/$tag.ckpt" \
        --weights "$out/$tag.pt" --log "$out/log_$tag.jsonl" "$@" > "/tmp/$tag.stdout" 2>&1
    echo "$tag exited $?" >> /tmp/exits.txt
}
rm -f /tmp/exits.txt
run b1 --lam 1 &
run b03 --lam 0.3 &
run b3 --lam 3 &
run b10 --lam 10 &
run s1 --lam 1 --bound-form symbol &
run w1 --lam 1 --warmup-steps 300 &
wait
cat "$out"/log_*.jsonl > "$out/sweep_log.jsonl" && rm "$out"/log_*.jsonl
{ nvidia-smi 2>&1 | head -15; cat /tmp/exits.txt; for f in /tmp/*.stdout; do echo "== $f"; tail -c 3000 "$f"; done; } > "$out/sweep_stdout.txt"
