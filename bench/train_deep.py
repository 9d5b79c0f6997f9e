#!/usr/bin/env python3
"""Training speed of the colour models: host-train (burn, flex backend) vs PyTorch CPU eager,
side by side in one run, same architecture, batch, input size and optimizer (Adam).

  - lenet5-like on CIFAR-10 (3x32x32), batch 64
  - alexnet on the flowers at 224x224 (17 classes), batch 32
  - vgg16 on the flowers at 224x224 (17 classes), batch 16

host-train trains through its CLI on the real data (`--iterations N`, evaluation excluded from
images/s, which metrics.csv reports); PyTorch trains the same networks (bench/torch_train.py, with
the same layer shapes, parameter counts printed and compared) on random tensors of the same
shape already in memory, so its figure has no data-loading cost at all. The first steps are
warm-up on both sides and are not timed.

    cargo build --release -p host-train
    python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch numpy   # once
    python3 bench/train_deep.py [--data-dir ../shared/data] [--torch /tmp/torch-venv/bin/python]
                                [--models lenet5-like,alexnet,vgg16] [--threads 2]

Run on an idle machine: PyTorch's OpenMP threads spin-wait and collapse when another process
holds a core.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# model: (dataset, image size, classes, batch, warm-up steps, timed steps)
CASES = {
    "lenet5-like": ("cifar10", 32, 10, 64, 50, 400),
    "alexnet": ("oxflower17", 224, 17, 32, 2, 12),
    "vgg16": ("oxflower17", 224, 17, 16, 1, 4),
}



def ours(model, data_dir, threads):
    dataset, size, _, batch, warm, steps = CASES[model]
    with tempfile.TemporaryDirectory() as d:
        run = os.path.join(d, "run")
        total = warm + steps
        cmd = [os.path.join(ROOT, "target", "release", "host-train"), "train", "--model", model,
               "--dataset", dataset, "--data-dir", data_dir, "--iterations", str(total),
               "--eval-every", str(warm), "--checkpoint-every", str(total), "--test-limit", "1",
               "--threads", str(threads), "--batch-size", str(batch), "--quiet", "--out", run,
               "--lr", "1e-3" if model == "lenet5-like" else "1e-4"]
        if dataset == "oxflower17":
            cmd += ["--image-size", str(size)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = list(csv.DictReader(open(os.path.join(run, "metrics.csv"))))
        summary = subprocess.run(
            [os.path.join(ROOT, "target", "release", "host-train"), "summary", "--model", model,
             "--input", f"{size}x{size}x3", "--classes", str(CASES[model][2])],
            check=True, capture_output=True, text=True).stdout
    params = int(summary.split("total: ")[1].split(" parameters")[0])
    # One row per `warm` steps: the first is the warm-up, the rest together are the timed steps
    # (each row's images/s covers only its own training steps).
    imgs = secs = 0.0
    for prev, row in zip(rows, rows[1:]):
        n = (int(row["iteration"]) - int(prev["iteration"])) * batch
        imgs += n
        secs += n / float(row["images_per_s"])
    return {"img_per_s": imgs / secs, "params": params}


def torch(py, model, threads):
    """PyTorch's twin (bench/torch_train.py) on random tensors of the same shape."""
    if not py:
        return None
    _, size, classes, batch, warm, steps = CASES[model]
    lr = "1e-3" if model == "lenet5-like" else "1e-4"
    out = subprocess.run([py, os.path.join(ROOT, "bench", "torch_train.py"), "--model", model,
                          "--random", f"3x{size}x{size}", "--classes", str(classes),
                          "--batch", str(batch), "--warmup", str(warm), "--steps", str(steps),
                          "--threads", str(threads), "--lr", lr],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", default=os.path.join(ROOT, "..", "shared", "data"))
    default_py = "/tmp/torch-venv/bin/python"
    p.add_argument("--torch", default=default_py if os.path.exists(default_py) else None)
    p.add_argument("--models", default="lenet5-like,alexnet,vgg16")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} (compare on an idle machine)")
    print()
    print(f"| model | input | batch | timed steps | params (both) | host-train img/s | "
          f"PyTorch img/s | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for m in a.models.split(","):
        _, size, _, batch, _, steps = CASES[m]
        o = ours(m, a.data_dir, a.threads)
        r = torch(a.torch, m, a.threads)
        same = "" if not r or r["params"] == o["params"] else f" (PyTorch {r['params']:,})"
        ratio = f"{o['img_per_s'] / r['img_per_s']:.2f}" if r else "-"
        rs = f"{r['img_per_s']:,.1f}" if r else "-"
        print(f"| {m} | {size}x{size}x3 | {batch} | {steps} | {o['params']:,}{same} | "
              f"{o['img_per_s']:,.1f} | {rs} | {ratio} |", flush=True)
    if a.torch:
        v = subprocess.run([a.torch, "-c", "import torch; print(torch.__version__)"],
                           capture_output=True, text=True).stdout.strip()
        print(f"\nPyTorch {v}, {a.threads} threads")


if __name__ == "__main__":
    sys.exit(main())
