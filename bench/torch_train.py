#!/usr/bin/env python3
"""PyTorch eager twins of host-train's networks, trained the way host-train trains them, for the
side-by-side figures (bench/train_deep.py on the CPU, scripts/gpu-check.sh on the GPU).

The nets have host-train's layer shapes (the parameter count is printed so a caller can compare
it with `host-train summary`): lenet5-like (a same-padded first conv on 28x28, valid elsewhere),
alexnet (the seed's, LRN 5 / 1e-4 / 0.75 / 2, without its bugs) and vgg16 (configuration D).
Training: Adam (beta 0.9 / 0.999, epsilon 1e-8), mean cross-entropy, pixels x / 255, a fresh
shuffle each epoch, dropout in training only. The first `--warmup` steps (cuDNN autotuning,
allocator growth) are not timed; the timed steps end with a device synchronisation.

Data: either `--data DIR` holding the `.npy` splits `host-train dump` writes (the same pixels,
split and labels host-train trains on), or `--random` tensors of the model's input (speed only).

    python3 bench/torch_train.py --model alexnet --data DIR --steps 300 --batch 64 --device cuda

Prints one JSON line: params, img_per_s, the mean loss of the first and of the last
`--loss-window` steps (warm-up included, as host-train's metrics.csv counts them), test accuracy
(with --data), torch version and device name.
"""
import argparse
import json
import sys
import time

import numpy as np
import torch
import torch.nn as nn


def lenet5_like(c, size, classes):
    pad = 2 if size == 28 else 0
    s = ((size + 2 * pad - 4) // 2 - 4) // 2
    return nn.Sequential(
        nn.Conv2d(c, 6, 5, padding=pad), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * s * s, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, classes))


def alexnet(c, size, classes):
    features = nn.Sequential(
        nn.Conv2d(c, 96, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0),
        nn.Conv2d(96, 256, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0),
        nn.Conv2d(256, 384, 3, 1, 1), nn.ReLU(), nn.Conv2d(384, 384, 3, 1, 1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Flatten())
    flat = features(torch.zeros(1, c, size, size)).shape[1]
    return nn.Sequential(features, nn.Linear(flat, 4096), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(4096, classes))


def vgg16(c, size, classes):
    layers = []
    for n, co in zip([2, 2, 3, 3, 3], [64, 128, 256, 512, 512]):
        for _ in range(n):
            layers += [nn.Conv2d(c, co, 3, padding=1), nn.ReLU()]
            c = co
        layers.append(nn.MaxPool2d(2))
    s = size // 32
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512 * s * s, 4096), nn.ReLU(),
                         nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(4096, classes))


NETS = {"lenet5-like": lenet5_like, "alexnet": alexnet, "vgg16": vgg16}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True, choices=sorted(NETS))
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="folder of host-train dump's .npy splits")
    src.add_argument("--random", metavar="CxHxW", help="random input of this shape, e.g. 3x224x224")
    p.add_argument("--classes", type=int, default=10, help="with --random")
    p.add_argument("--steps", type=int, required=True, help="timed steps")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--loss-window", type=int, default=20)
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()

    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    if a.data:
        xs = torch.from_numpy(np.load(f"{a.data}/train-images.npy")).to(dev)
        ys = torch.from_numpy(np.load(f"{a.data}/train-labels.npy")).long().to(dev)
        xt = torch.from_numpy(np.load(f"{a.data}/test-images.npy")).to(dev)
        yt = torch.from_numpy(np.load(f"{a.data}/test-labels.npy")).long().to(dev)
        classes = int(max(ys.max(), yt.max())) + 1
        c, size = xs.shape[1], xs.shape[2]
    else:
        c, size, _ = map(int, a.random.split("x"))
        classes = a.classes
        xs = torch.randint(0, 256, (a.batch, c, size, size), dtype=torch.uint8, device=dev)
        ys = torch.randint(0, classes, (a.batch,), device=dev)
    net = NETS[a.model](c, size, classes).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = nn.CrossEntropyLoss()

    gen = torch.Generator(device="cpu").manual_seed(a.seed)
    order, at = torch.randperm(len(xs), generator=gen), 0

    def next_batch():
        nonlocal order, at
        if at + a.batch > len(order):
            order, at = torch.randperm(len(xs), generator=gen), 0
        idx = order[at:at + a.batch].to(dev)
        at += a.batch
        return xs[idx].float().div_(255.0), ys[idx]

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    losses = []

    def step():
        x, y = next_batch()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss

    net.train()
    # Losses stay on the device (reading each back would synchronise every step); the warm-up
    # steps count for the loss curve, not for the clock.
    for _ in range(a.warmup):
        losses.append(step().detach())
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        losses.append(step().detach())
    sync()
    dt = time.perf_counter() - t0
    losses = torch.stack(losses).float().cpu().numpy()
    w = max(1, min(a.loss_window, len(losses) // 2))
    out = {
        "model": a.model,
        "params": sum(p.numel() for p in net.parameters()),
        "img_per_s": a.steps * a.batch / dt,
        "seconds": dt,
        "loss_first": float(losses[:w].mean()),
        "loss_last": float(losses[-w:].mean()),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
    }
    if a.data:
        net.eval()
        right = 0
        with torch.no_grad():
            for i in range(0, len(xt), 256):
                pred = net(xt[i:i + 256].float().div_(255.0)).argmax(1)
                right += int((pred == yt[i:i + 256]).sum())
        out["test_accuracy"] = right / len(xt)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
