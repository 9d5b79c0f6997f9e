#!/usr/bin/env python3
"""Host batch-1 latency: our int8 device model (device-infer, via `export latency`) against
onnxruntime fp32 on the same network, one thread each, in the same run.

onnxruntime is timed around `InferenceSession.run` from Python, as the issue's reference was;
that includes a per-call cost unrelated to the network, measured here on an Identity model of
the same input and reported, with the ratio against onnxruntime's time minus that floor.

    cargo build --release -p export
    target/release/export quantize tests/fixtures/lenet5-like/model.onnx --data-dir ../shared/data --out /tmp/lenet.lnq8
    /tmp/torch-venv/bin/python bench/latency.py [model.onnx] [model.lnq8]
"""
import os
import re
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ort_latency(path, runs=5000):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.zeros((1, 1, 28, 28), dtype=np.float32)
    x[0, 0, 6, 6:22] = 1.0
    for _ in range(runs // 10):
        sess.run(None, {name: x})
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        t.append((time.perf_counter() - t0) * 1e6)
    t.sort()
    return t[len(t) // 2]


def ort_floor(runs=5000):
    """Median of `run` on an Identity graph with the same input: the per-call cost."""
    import onnx
    from onnx import TensorProto, helper
    shape = [1, 1, 28, 28]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    path = "/tmp/lenet-edge-identity.onnx"
    onnx.save(model, path)
    return ort_latency(path, runs)


def main():
    onnx = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "tests", "fixtures", "lenet5-like", "model.onnx")
    lnq8 = sys.argv[2] if len(sys.argv) > 2 else "/tmp/lenet.lnq8"
    out = subprocess.run([os.path.join(ROOT, "target", "release", "export"), "latency", lnq8],
                         check=True, capture_output=True, text=True).stdout
    ours = float(re.search(r"median ([0-9.]+) us", out).group(1))
    theirs = ort_latency(onnx)
    floor = ort_floor()
    print("| runtime | precision | median batch-1 latency (us) |")
    print("| --- | --- | --- |")
    print(f"| device-infer (host) | int8 | {ours:.1f} |")
    print(f"| onnxruntime {ort.__version__} | fp32 | {theirs:.1f} |")
    print(f"| onnxruntime {ort.__version__}, Identity graph (per-call floor) | fp32 | {floor:.1f} |")
    print(f"\nratio int8 / onnxruntime fp32: {ours / theirs:.2f} (goal <= 0.5)")
    print(f"ratio int8 / (onnxruntime fp32 - floor): {ours / (theirs - floor):.2f}")


if __name__ == "__main__":
    main()
