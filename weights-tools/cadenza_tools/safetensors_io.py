"""A minimal safetensors writer and reader (no dependency on the `safetensors` package).

File layout (https://github.com/huggingface/safetensors, "Format"):
    8 bytes   N, the header length, unsigned little-endian
    N bytes   the header: UTF-8 JSON object
                  {"__metadata__": {str: str, ...},
                   "<tensor name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
              padded here with spaces so that N is a multiple of 8 (the data section then
              starts 8-byte aligned)
    data      the tensors' bytes, little-endian, C order; offsets are relative to the start
              of the data section. This writer tiles them contiguously in the order given:
              the first begins at 0, each next one begins where the previous ended, and the
              last ends at the end of the file (no holes, no overlap) -- cadenza's reader
              (runtime/weights.c) checks exactly that.
"""
import json
import os
import struct
import tempfile

import numpy as np

# safetensors dtype name -> (numpy dtype or None, bytes per element)
DTYPES = {
    "F64": (np.dtype("<f8"), 8),
    "F32": (np.dtype("<f4"), 4),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (None, 2),  # numpy has no bfloat16: carried as raw little-endian uint16
    "I64": (np.dtype("<i8"), 8),
    "I32": (np.dtype("<i4"), 4),
    "I16": (np.dtype("<i2"), 2),
    "I8": (np.dtype("i1"), 1),
    "U8": (np.dtype("u1"), 1),
    "BOOL": (np.dtype("?"), 1),
}


class Entry:
    """One tensor to write: its safetensors dtype name, shape, and raw little-endian bytes."""

    __slots__ = ("name", "dtype", "shape", "data")

    def __init__(self, name, dtype, shape, data):
        if dtype not in DTYPES:
            raise ValueError(f"tensor '{name}': unsupported dtype {dtype}")
        shape = [int(d) for d in shape]
        if any(d < 0 for d in shape):
            raise ValueError(f"tensor '{name}': negative dimension in shape {shape}")
        n = 1
        for d in shape:
            n *= d
        data = bytes(data) if not isinstance(data, (bytes, bytearray, memoryview)) else data
        if len(data) != n * DTYPES[dtype][1]:
            raise ValueError(f"tensor '{name}': {len(data)} bytes for shape {shape} of {dtype} "
                             f"(expected {n * DTYPES[dtype][1]})")
        self.name, self.dtype, self.shape, self.data = name, dtype, shape, data


def entry_from_numpy(name, array):
    a = np.asarray(array)
    for st, (npdt, _) in DTYPES.items():
        if npdt is not None and a.dtype.kind == npdt.kind and a.dtype.itemsize == npdt.itemsize:
            return Entry(name, st, a.shape, np.ascontiguousarray(a, dtype=npdt).tobytes(order="C"))
    raise ValueError(f"tensor '{name}': numpy dtype {a.dtype} has no safetensors equivalent")


def entry_from_torch(name, tensor):
    """A torch tensor (any device) as an Entry; bfloat16 is carried bit-exactly."""
    import torch
    t = tensor.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return Entry(name, "BF16", t.shape, t.view(torch.int16).numpy().astype("<i2").tobytes())
    if t.is_complex():
        raise ValueError(f"tensor '{name}': complex tensors are stored as view_as_real, not directly")
    return entry_from_numpy(name, t.numpy())


def build_header(entries, metadata=None):
    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError(f"__metadata__ must map strings to strings; key {k!r} has {type(v).__name__}")
        header["__metadata__"] = dict(metadata)
    offset = 0
    for e in entries:
        if not e.name or e.name == "__metadata__":
            raise ValueError(f"invalid tensor name {e.name!r}")
        if e.name in header:
            raise ValueError(f"duplicate tensor name '{e.name}'")
        end = offset + len(e.data)
        header[e.name] = {"dtype": e.dtype, "shape": e.shape, "data_offsets": [offset, end]}
        offset = end
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((-len(text)) % 8)
    return text


def write(path, entries, metadata=None):
    """Write `entries` (a list of Entry, in file order) and `metadata` (str -> str) to `path`.
    The file appears atomically (written to a temporary file in the same folder, then renamed)."""
    entries = list(entries)
    header = build_header(entries, metadata)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=folder)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(header)))
            f.write(header)
            for e in entries:
                f.write(e.data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read(path):
    """Read a safetensors file: returns (metadata dict, {name: numpy array}) in file order.
    BF16 tensors come back as uint16 arrays of the raw bits. Validates offsets strictly."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: {len(blob)} bytes, too short for a safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise ValueError(f"{path}: header length {n} runs past the end of the file ({len(blob)} bytes)")
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = memoryview(blob)[8 + n:]
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    spans = []
    for name, info in header.items():
        dt = info["dtype"]
        b, e = info["data_offsets"]
        npdt, size = DTYPES[dt]
        count = 1
        for d in info["shape"]:
            count *= d
        if e - b != count * size or e > len(data) or b > e:
            raise ValueError(f"{path}: tensor '{name}' offsets [{b}, {e}] do not match shape {info['shape']} {dt}")
        raw = bytes(data[b:e])
        arr = np.frombuffer(raw, dtype=npdt if npdt is not None else np.dtype("<u2"))
        out[name] = arr.reshape(info["shape"])
        spans.append((b, e, name))
    spans.sort()
    pos = 0
    for b, e, name in spans:
        if b != pos:
            raise ValueError(f"{path}: tensor '{name}' begins at {b}, expected {pos} (hole or overlap)")
        pos = e
    if pos != len(data):
        raise ValueError(f"{path}: data section has {len(data)} bytes, tensors cover {pos}")
    return meta, out
