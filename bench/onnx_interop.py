#!/usr/bin/env python3
"""Shows that the ONNX files host-train exports are valid for the rest of the ecosystem: the
onnx checker (full check, with shape inference) accepts them, and onnxruntime runs them and
reproduces burn's logits from the parity sample written beside each file.

    /tmp/torch-venv/bin/pip install onnx onnxruntime     # once
    /tmp/torch-venv/bin/python bench/onnx_interop.py [tests/golden/lenet5-like/model.onnx ...]

The parity sample (<model>.sample.pb, message lenet.ParitySample in protos/proto/lenet.proto)
is read with the tiny protobuf decoder of bench/pbwire.py, so no generated Python code is
needed.
"""
import os
import struct
import sys

import numpy as np
import onnx
import onnxruntime as ort

from pbwire import fields, varints

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tensor(b):
    shape, data = [], []
    for f, w, v in fields(b):
        if f == 1:
            shape.extend(varints(w, v))
        elif f == 2:
            data.extend(struct.unpack(f"<{len(v) // 4}f", v) if w == 2 else struct.unpack("<f", v))
    return np.array(data, dtype=np.float32).reshape(shape)


def sample(path):
    out = {}
    for f, w, v in fields(open(path, "rb").read()):
        if f == 3:
            out["inputs"] = tensor(v)
        elif f == 4:
            out["logits"] = tensor(v)
    return out


def main():
    models = sys.argv[1:] or [os.path.join(ROOT, "tests", "golden", "lenet5-like", "model.onnx")]
    ok = True
    for path in models:
        m = onnx.load(path)
        onnx.checker.check_model(m, full_check=True)
        print(f"{path}: onnx {onnx.__version__} checker (full_check) accepts it; opset "
              f"{m.opset_import[0].version}, {len(m.graph.node)} nodes")
        s = sample(os.path.splitext(path)[0] + ".sample.pb")
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        batch = sess.get_inputs()[0].shape[0]
        x = s["inputs"]
        if batch == 1:
            y = np.concatenate([sess.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
        else:
            y = sess.run(None, {name: x})[0]
        diff = float(np.abs(y - s["logits"]).max())
        agree = int((y.argmax(1) == s["logits"].argmax(1)).sum())
        print(f"  onnxruntime {ort.__version__}: max |logit - burn| {diff:.3e}, argmax agrees {agree}/{len(x)}")
        ok &= diff <= 1e-5 and agree == len(x)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
