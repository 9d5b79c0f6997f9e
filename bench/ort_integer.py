#!/usr/bin/env python3
"""onnxruntime on the integer verification graph of a golden set's device model.

`export integer-onnx CASE/model.lnq8` writes CASE/model.integer.onnx: the device model as
integer-only ONNX ops (u8 pixels in, the device's int8 outputs out). tract reproduces
device-infer on it bit for bit in `cargo test`; this script asks a second runtime,
onnxruntime, the same question on the golden set's cases (their pixels and device-infer's
int8 outputs are in CASE/golden.pb) and prints how many match exactly.

    target/release/export integer-onnx tests/golden/cmsis-cifar10/model.lnq8 --check 0
    python3 bench/ort_integer.py tests/golden/cmsis-cifar10

Needs onnxruntime and numpy (`pip install onnxruntime numpy`); golden.pb is read with the
small protobuf wire decoder of bench/pbwire.py, so no generated code is needed.
"""
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pbwire import fields, varints


def golden_cases(path):
    """(pixels, int8 outputs) of each GoldenCase, and the input shape (H, W, C)."""
    shape, cases = [], []
    for num, wt, v in fields(path.read_bytes()):
        if num == 9:  # input_shape
            shape.extend(varints(wt, v))
        elif num == 11:  # cases
            pixels = outputs = None
            for n, _, w in fields(v):
                if n == 3:
                    pixels = np.frombuffer(w, dtype=np.uint8)
                elif n == 5:
                    outputs = np.frombuffer(w, dtype=np.int8)
            cases.append((pixels, outputs))
    return shape, cases


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    case = Path(sys.argv[1])
    shape, cases = golden_cases(case / "golden.pb")
    onnx = case / "model.integer.onnx"
    if not onnx.exists():
        sys.exit(f"{onnx} missing: run `export integer-onnx {case / 'model.lnq8'} --check 0` first")
    s = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    same, worst = 0, 0
    for pixels, want in cases:
        got = s.run(None, {name: pixels.reshape([1] + shape)})[0].reshape(-1)
        same += int(np.array_equal(got, want))
        worst = max(worst, int(np.abs(got.astype(int) - want.astype(int)).max()))
    print(f"{case.name}: onnxruntime {ort.__version__} on model.integer.onnx: "
          f"{same}/{len(cases)} cases bit-exact with device-infer (max {worst} LSB)")
    sys.exit(0 if same == len(cases) else 1)


if __name__ == "__main__":
    main()
