"""A tiny protobuf wire-format reader for the bench scripts: they read our messages
(protos/proto/lenet.proto) without generated Python code."""


def varint(b, i):
    """The varint at byte i of b, and the index after it."""
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def fields(b):
    """(field number, wire type, value) of a protobuf message; length-delimited values as bytes."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        f, w = key >> 3, key & 7
        if w == 0:
            v, i = varint(b, i)
        elif w == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        elif w == 5:
            v, i = b[i:i + 4], i + 4
        elif w == 1:
            v, i = b[i:i + 8], i + 8
        else:
            raise ValueError(f"wire type {w} at byte {i}")
        yield f, w, v


def varints(w, v):
    """The values of one occurrence of a repeated integer field: packed (wire type 2) or not."""
    if w != 2:
        return [v]
    out, j = [], 0
    while j < len(v):
        x, j = varint(v, j)
        out.append(x)
    return out
