"""Loading torch checkpoints without running code from them.

`torch.load` unpickles, and a pickle can call any importable function. The converter reads
files that users bring, so it does not call torch.load (whose `pickle_module` argument torch
1.13 silently ignores): it opens the zip archive torch.save writes (since torch 1.6) and
unpickles `data.pkl` itself with an allow-list:
  - tensors: `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter(_with_state)`, rebuilt
    here from the archive's `data/<key>` records as strided views (bounds checked);
    storage types (`torch.HalfStorage`, ...) only name a dtype;
  - `collections.OrderedDict`, `fractions.Fraction` (demucs stores `segment` as one), numpy
    scalars/arrays (training metrics), `torch.Size`;
  - class *references*: a pickled class such as `demucs.htdemucs.HTDemucs` comes back as a
    `ClassRef(module, name)`, which is never imported or called.
Any other global is refused with its name. TorchScript archives and the legacy (pre-1.6)
format are refused.
"""
import collections
import fractions
import io
import pickle
import zipfile


class ClassRef:
    """Stands for a class named in the pickle (e.g. a package's `klass`). Not callable."""

    __slots__ = ("module", "name")

    def __init__(self, module, name):
        self.module, self.name = module, name

    @property
    def qualname(self):
        return f"{self.module}.{self.name}"

    def __repr__(self):
        return f"<class {self.qualname}>"

    def __eq__(self, other):
        return isinstance(other, ClassRef) and (self.module, self.name) == (other.module, other.name)

    def __hash__(self):
        return hash((self.module, self.name))


class UnsafeGlobal(pickle.UnpicklingError):
    pass


class BadCheckpoint(Exception):
    pass


class StorageType:
    __slots__ = ("name", "dtype")

    def __init__(self, name, dtype):
        self.name, self.dtype = name, dtype


def _storage_dtypes():
    import torch
    return {
        "HalfStorage": torch.float16, "FloatStorage": torch.float32, "DoubleStorage": torch.float64,
        "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
        "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
        "BoolStorage": torch.bool,
    }


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    import torch
    if not isinstance(storage, torch.Tensor):
        raise BadCheckpoint(f"a tensor refers to {type(storage).__name__}, not a storage")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or storage_offset < 0 or any(s < 0 for s in size + stride):
        raise BadCheckpoint(f"a tensor has an invalid layout (size {size}, stride {stride}, "
                            f"offset {storage_offset})")
    n = 1
    for s in size:
        n *= s
    if n:
        last = storage_offset + sum((s - 1) * st for s, st in zip(size, stride))
        if last >= storage.numel():
            raise BadCheckpoint(f"a tensor of size {size} reaches element {last} of a storage of "
                                f"{storage.numel()}")
    return torch.as_strided(storage, size, stride, storage_offset)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    # pickle protocol 2 writes bytes objects as _codecs.encode(text, 'latin1')
    if encoding not in ("latin1", "latin-1") or not isinstance(obj, str):
        raise UnsafeGlobal(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return obj.encode("latin1", errors)


def _allowed_globals():
    import torch
    allowed = {
        "collections.OrderedDict": collections.OrderedDict,
        "fractions.Fraction": fractions.Fraction,
        "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
        "torch._utils._rebuild_parameter": _rebuild_parameter,
        "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
        "torch.Size": torch.Size,
        "_codecs.encode": _codecs_encode,
    }
    for name, dt in _storage_dtypes().items():
        allowed[f"torch.{name}"] = StorageType(name, dt)
    try:
        import numpy as np
        try:
            import numpy._core.multiarray as ma  # numpy >= 2
        except ImportError:
            import numpy.core.multiarray as ma
        for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
            allowed[f"{mod}.scalar"] = ma.scalar
            allowed[f"{mod}._reconstruct"] = ma._reconstruct
        allowed["numpy.dtype"] = np.dtype
        allowed["numpy.ndarray"] = np.ndarray
    except Exception:
        pass
    return allowed


# Modules whose classes may be *named* (not called) in a checkpoint: the model classes.
CLASS_REF_MODULES = ("demucs.",)


def _unpickler(data, persistent_load):
    allowed = _allowed_globals()

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            key = f"{module}.{name}"
            if key in allowed:
                return allowed[key]
            if module.startswith(CLASS_REF_MODULES):
                return ClassRef(module, name)
            raise UnsafeGlobal(
                f"the pickle references '{key}', which the converter does not load "
                f"(only tensors, Fraction, numpy scalars and demucs class names are allowed; "
                f"pass --unsafe-pickle to load it with plain torch.load if you trust the file)")

        def persistent_load(self, pid):
            return persistent_load(pid)

    return Unpickler(io.BytesIO(data), encoding="utf-8")


def _load_zip(path):
    import torch
    if not zipfile.is_zipfile(path):
        raise BadCheckpoint("not a zip archive: torch.save writes one since torch 1.6 (the legacy "
                            "format and other files are not read)")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise BadCheckpoint(f"not a torch.save archive: expected one <name>/data.pkl, found {pkls}")
        prefix = pkls[0][: -len("data.pkl")]
        if prefix + "constants.pkl" in names:
            raise BadCheckpoint("a TorchScript archive, not a torch.save checkpoint")
        if prefix + "byteorder" in names and zf.read(prefix + "byteorder").strip() not in (b"little", b""):
            raise BadCheckpoint("big-endian tensor data is not supported")
        storages = {}

        def persistent_load(pid):
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
                raise BadCheckpoint(f"unexpected persistent id {pid!r:.80}")
            _, stype, key, _location, numel = pid
            if not isinstance(stype, StorageType):
                raise BadCheckpoint(f"storage of unknown type {stype!r:.80}")
            if key not in storages:
                rec = f"{prefix}data/{key}"
                if rec not in names:
                    raise BadCheckpoint(f"the archive lacks the tensor data record {rec}")
                raw = zf.read(rec)
                itemsize = torch.empty(0, dtype=stype.dtype).element_size()
                if len(raw) != int(numel) * itemsize:
                    raise BadCheckpoint(f"record {rec} has {len(raw)} bytes for {numel} "
                                        f"{stype.name} elements")
                storages[key] = (torch.frombuffer(bytearray(raw), dtype=stype.dtype) if raw
                                 else torch.empty(0, dtype=stype.dtype))
            elif storages[key].dtype != stype.dtype:
                raise BadCheckpoint(f"storage {key} is used with two dtypes")
            return storages[key]

        return _unpickler(zf.read(pkls[0]), persistent_load).load()


def torch_load(path, unsafe=False):
    """The object saved in `path` with tensors on the CPU. `unsafe`: plain torch.load."""
    if unsafe:
        import inspect
        import torch
        import warnings
        kw = {"weights_only": False} if "weights_only" in inspect.signature(torch.load).parameters else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", **kw)
    return _load_zip(path)
