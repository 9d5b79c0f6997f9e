#!/usr/bin/env python3
"""The GPU check of scripts/gpu-check.sh: host-train and PyTorch eager train the same networks on
the same data at the same batch, one after the other in this one run, and a table compares them.

  - lenet5-like on MNIST, one epoch (938 steps of 64)
  - alexnet on the Oxford-17 flowers at 224x224, --steps steps of 64
  - vgg16 on the flowers at 224x224, --steps steps of 64

Both sides: Adam (1e-3 for LeNet, 1e-4 for the deep nets), no augmentation, pixels x / 255, the
split host-train makes (PyTorch reads it from `host-train dump`). host-train's images/s comes
from metrics.csv, evaluation excluded, the first evaluation interval (kernel compilation and
autotuning) left out; PyTorch leaves out the same number of warm-up steps. Accuracy is on the
whole test split at the end (MNIST 10,000, flowers 360).

After the LeNet run, the checkpoint written on the GPU is evaluated again on the CPU (flex) and
exported to ONNX there: checkpoints move between devices.

Every run has a time limit (--limit 130 s for host-train, --torch-limit 60 s for PyTorch), so
the whole check ends inside the device tool's 10 minutes; a host-train run cut short still
reports the intervals it finished. Results: <out>/gpu-check.md (the table), gpu-check.json, and each run's metrics.
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    print(msg, flush=True)


def run(cmd, limit=None, **kw):
    """Runs cmd, echoing it; returns (returncode, seconds). A run past `limit` is stopped."""
    log("$ " + " ".join(cmd))
    t0 = time.perf_counter()
    try:
        rc = subprocess.run(cmd, timeout=limit, **kw).returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    return rc, time.perf_counter() - t0


def metrics(run_dir, batch):
    """images/s over the intervals after the first, first and last loss, last test accuracy."""
    path = os.path.join(run_dir, "metrics.csv")
    rows = list(csv.DictReader(open(path))) if os.path.exists(path) else []
    if not rows:
        return {"rows": 0}
    imgs = secs = 0.0
    for prev, row in zip(rows, rows[1:]):
        n = (int(row["iteration"]) - int(prev["iteration"])) * batch
        imgs += n
        secs += n / float(row["images_per_s"])
    return {
        "rows": len(rows),
        "steps": int(rows[-1]["iteration"]),
        "img_per_s": imgs / secs if secs else float(rows[0]["images_per_s"]),
        "first_interval_img_per_s": float(rows[0]["images_per_s"]),
        "loss_first": float(rows[0]["train_loss"]),
        "loss_last": float(rows[-1]["train_loss"]),
        "test_accuracy": float(rows[-1]["test_acc"]),
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host-train", required=True, help="the host-train binary")
    p.add_argument("--data-dir", required=True, help="holding mnist/ and oxflower17/")
    p.add_argument("--python", default=sys.executable, help="the Python with torch")
    p.add_argument("--device", default="cuda", help="host-train's --device (cuda, wgpu, flex)")
    p.add_argument("--torch-device", default=None, help="default: cuda, or cpu with --device flex")
    p.add_argument("--steps", type=int, default=300, help="steps of the flower nets")
    p.add_argument("--lenet-steps", type=int, default=938)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--models", default="lenet5-like,alexnet,vgg16")
    p.add_argument("--limit", type=float, default=130, help="seconds per host-train run")
    p.add_argument("--torch-limit", type=float, default=60, help="seconds per PyTorch run")
    p.add_argument("--work", default="/tmp/gpu-check")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch_dev = a.torch_device or ("cpu" if a.device == "flex" else "cuda")
    os.makedirs(a.out, exist_ok=True)
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    ht = a.host_train

    dumps = {}
    for ds, size in [("mnist", None), ("oxflower17", a.image_size)]:
        d = os.path.join(a.work, f"{ds}-npy")
        cmd = [ht, "dump", "--dataset", ds, "--data-dir", a.data_dir, "--out", d]
        if size:
            cmd += ["--image-size", str(size)]
        rc, _ = run(cmd)
        if rc != 0:
            sys.exit(f"host-train dump {ds} failed ({rc})")
        dumps[ds] = d

    results = []
    for model in a.models.split(","):
        if model == "lenet5-like":
            ds, steps, lr, every = "mnist", a.lenet_steps, 1e-3, 100
        else:
            ds, steps, lr, every = "oxflower17", a.steps, 1e-4, 50
        every = max(1, min(every, steps // 4))
        run_dir = os.path.join(a.work, "runs", model)
        cmd = [ht, "train", "--model", model, "--dataset", ds, "--data-dir", a.data_dir,
               "--device", a.device, "--iterations", str(steps), "--batch-size", str(a.batch),
               "--optimizer", "adam", "--lr", str(lr), "--eval-every", str(every),
               "--checkpoint-every", str(every), "--augment", "none", "--quiet",
               "--out", run_dir]
        if ds == "oxflower17":
            cmd += ["--image-size", str(a.image_size)]
        rc, wall = run(cmd, limit=a.limit)
        ours = metrics(run_dir, a.batch)
        c, size = (1, 28) if ds == "mnist" else (3, a.image_size)
        classes = 10 if ds == "mnist" else 17
        summary = subprocess.run([ht, "summary", "--model", model, "--input",
                                  f"{size}x{size}x{c}", "--classes", str(classes)],
                                 capture_output=True, text=True).stdout
        if "total: " in summary:
            ours["params"] = int(summary.split("total: ")[1].split(" parameters")[0])
        ours.update({"rc": rc, "wall_s": wall})
        log(f"host-train {model}: {json.dumps(ours)}")

        tcmd = [a.python, os.path.join(ROOT, "bench", "torch_train.py"), "--model", model,
                "--data", dumps[ds], "--steps", str(steps - every), "--warmup", str(every),
                "--batch", str(a.batch), "--lr", str(lr), "--device", torch_dev,
                "--loss-window", str(every)]
        t0 = time.perf_counter()
        try:
            out = subprocess.run(tcmd, capture_output=True, text=True, timeout=a.torch_limit)
            theirs = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 \
                else {"rc": out.returncode, "error": out.stderr[-2000:]}
        except subprocess.TimeoutExpired:
            theirs = {"rc": "timeout"}
        theirs["wall_s"] = time.perf_counter() - t0
        log(f"pytorch {model}: {json.dumps(theirs)}")
        results.append({"model": model, "dataset": ds, "steps": steps, "warmup": every,
                        "batch": a.batch, "host_train": ours, "pytorch": theirs})

    # The LeNet checkpoint, trained on the device, evaluated and exported on the CPU.
    moved = None
    lenet_dir = os.path.join(a.work, "runs", "lenet5-like")
    if os.path.exists(os.path.join(lenet_dir, "metrics.csv")):
        out = subprocess.run([ht, "eval", "--run", lenet_dir, "--data-dir", a.data_dir,
                              "--device", "flex"], capture_output=True, text=True)
        onnx = os.path.join(a.work, "lenet5-like.onnx")
        ex = subprocess.run([ht, "export-onnx", "--run", lenet_dir, "--out", onnx,
                             "--data-dir", a.data_dir],
                            capture_output=True, text=True)
        said = [l for l in out.stdout.splitlines() if l.startswith("test accuracy")]
        moved = {"eval_rc": out.returncode, "eval": said[-1] if said else out.stderr[-1500:],
                 "export_rc": ex.returncode, "export": (ex.stdout + ex.stderr)[-800:]}
        log(f"checkpoint on the CPU: {json.dumps(moved)}")

    info = {"device": a.device, "torch_device": torch_dev, "image_size": a.image_size,
            "results": results, "checkpoint_on_cpu": moved}
    json.dump(info, open(os.path.join(a.out, "gpu-check.json"), "w"), indent=1)
    lines = [f"host-train `--device {a.device}` vs PyTorch eager on `{torch_dev}`, batch "
             f"{a.batch}, flowers at {a.image_size}x{a.image_size}", "",
             "| model | data | params (host-train / PyTorch) | steps | host-train img/s | "
             "PyTorch img/s | ratio | "
             "loss first -> last (host-train) | (PyTorch) | test acc (host-train) | "
             "(PyTorch) |", "|" + " --- |" * 11]

    def f(d, k, fmt):
        return fmt.format(d[k]) if k in d else "-"

    for r in results:
        o, t = r["host_train"], r["pytorch"]
        ratio = f"{o['img_per_s'] / t['img_per_s']:.2f}" if "img_per_s" in o \
            and "img_per_s" in t else "-"
        done = f"{o.get('steps', 0)}/{r['steps']}" + ("" if o.get("rc") == 0 else
                                                     f" ({o.get('rc')})")
        lines.append(
            f"| {r['model']} | {r['dataset']} | {f(o, 'params', '{:,}')} / "
            f"{f(t, 'params', '{:,}')} | {done} | {f(o, 'img_per_s', '{:,.0f}')} | "
            f"{f(t, 'img_per_s', '{:,.0f}')} | {ratio} | "
            f"{f(o, 'loss_first', '{:.3f}')} -> {f(o, 'loss_last', '{:.3f}')} | "
            f"{f(t, 'loss_first', '{:.3f}')} -> {f(t, 'loss_last', '{:.3f}')} | "
            f"{f(o, 'test_accuracy', '{:.2%}')} | {f(t, 'test_accuracy', '{:.2%}')} |")
    if moved:
        lenet = [r["host_train"] for r in results if r["model"] == "lenet5-like"]
        own = f"{lenet[0]['test_accuracy']:.2%}" if lenet and "test_accuracy" in lenet[0] else "-"
        lines += ["", f"LeNet checkpoint from `--device {a.device}` (its own last test accuracy "
                  f"{own}), evaluated on the CPU (flex): {moved['eval']} (rc "
                  f"{moved['eval_rc']}); exported to ONNX on the CPU: rc {moved['export_rc']}"]
    table = "\n".join(lines) + "\n"
    open(os.path.join(a.out, "gpu-check.md"), "w").write(table)
    log("\n" + table)


if __name__ == "__main__":
    sys.exit(main())
