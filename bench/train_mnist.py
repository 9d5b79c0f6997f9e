#!/usr/bin/env python3
"""Training benchmark: host-train (burn, flex backend) vs PyTorch CPU, side by side in one run.

For fc, lenet5 and lenet5-like on MNIST, batch 64:
  - training images/s over one epoch at 1 and 2 threads (evaluation excluded on both sides),
  - test accuracy after 1 epoch (Adam 1e-3, both sides) and after 10 epochs (host-train with
    its recipe per model, PyTorch with the reference's constant Adam 1e-3).

Run on an idle machine (PyTorch's OpenMP spin-waiting collapses when another process holds a
core). Usage:

    cargo build --release -p host-train
    python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch numpy   # once
    python3 bench/train_mnist.py [--data-dir ../shared/data/mnist] [--torch /tmp/torch-venv/bin/python]
                                 [--models fc,lenet5,lenet5-like] [--long-epochs 10] [--no-long]

Without a PyTorch interpreter the PyTorch columns are left empty.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_NAMES = {"fc": "fc", "lenet5": "lenet5classic", "lenet5-like": "lenet5like"}
# host-train's 10-epoch recipe per model (batch 64 throughout).
# The LeNets use random 1-pixel translations (--augment-shift 1); fc none.
RECIPES = {
    "fc": ["--optimizer", "adam", "--lr", "0.001"],
    "lenet5": ["--optimizer", "adam", "--lr", "0.003", "--schedule", "cosine", "--augment-shift", "1"],
    "lenet5-like": ["--optimizer", "adam", "--lr", "0.003", "--schedule", "cosine", "--augment-shift", "1"],
}


def ours(model, data_dir, threads, epochs, extra):
    with tempfile.TemporaryDirectory() as d:
        run = os.path.join(d, "run")
        cmd = [os.path.join(ROOT, "target", "release", "host-train"), "train", "--model", model,
               "--data-dir", data_dir, "--epochs", str(epochs), "--threads", str(threads),
               "--batch-size", "64", "--quiet", "--out", run] + extra
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = list(csv.DictReader(open(os.path.join(run, "metrics.csv"))))
    return {
        "img_per_s": [float(r["images_per_s"]) for r in rows],
        "test_acc": [float(r["test_acc"]) for r in rows],
    }


def torch(py, model, data_dir, threads, epochs):
    if not py:
        return None
    script = os.path.join(ROOT, "..", "shared", "bench", "pytorch_mnist", "train_torch.py")
    env = dict(os.environ, MNIST_DIR=os.path.abspath(data_dir))
    out = subprocess.run([py, script, "--model", TORCH_NAMES[model], "--opt", "adam", "--epochs",
                          str(epochs), "--threads", str(threads), "--batch", "64"],
                         check=True, capture_output=True, text=True, env=env).stdout
    eps = [json.loads(l) for l in out.splitlines() if l.startswith('{"epoch"')]
    return {"img_per_s": [e["img_per_s"] for e in eps], "test_acc": [e["test_acc"] for e in eps]}


def fmt(x, spec):
    return "-" if x is None else format(x, spec)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "data", "mnist"))
    default_py = "/tmp/torch-venv/bin/python"
    p.add_argument("--torch", default=default_py if os.path.exists(default_py) else None)
    p.add_argument("--models", default="fc,lenet5,lenet5-like")
    p.add_argument("--long-epochs", type=int, default=10)
    p.add_argument("--no-long", action="store_true")
    a = p.parse_args()
    models = a.models.split(",")

    print(f"load average at start: {os.getloadavg()[0]:.2f} (compare on an idle machine)")
    print()
    print("## Training throughput, batch 64, one epoch of 60,000 images (images/s)")
    print()
    print("| model | threads | host-train | PyTorch | ratio | host-train 1-epoch test acc | PyTorch 1-epoch test acc |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for m in models:
        for t in (1, 2):
            o = ours(m, a.data_dir, t, 1, ["--optimizer", "adam", "--lr", "0.001"])
            r = torch(a.torch, m, a.data_dir, t, 1)
            oi, ri = o["img_per_s"][-1], (r["img_per_s"][-1] if r else None)
            ratio = oi / ri if ri else None
            print(f"| {m} | {t} | {oi:,.0f} | {fmt(ri, ',.0f')} | {fmt(ratio, '.2f')} | "
                  f"{100 * o['test_acc'][-1]:.2f}% | {fmt(r and 100 * r['test_acc'][-1], '.2f')}% |",
                  flush=True)
    if a.no_long:
        return
    print()
    print(f"## Test accuracy after {a.long_epochs} epochs (2 threads)")
    print()
    print("| model | host-train recipe | host-train best / final | PyTorch (Adam 1e-3) best / final |")
    print("| --- | --- | --- | --- |")
    for m in models:
        o = ours(m, a.data_dir, 2, a.long_epochs, RECIPES[m])
        r = torch(a.torch, m, a.data_dir, 2, a.long_epochs)
        tr = f"{100 * max(r['test_acc']):.2f}% / {100 * r['test_acc'][-1]:.2f}%" if r else "-"
        print(f"| {m} | {' '.join(RECIPES[m])} | {100 * max(o['test_acc']):.2f}% / "
              f"{100 * o['test_acc'][-1]:.2f}% | {tr} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
