"""cadenza_client.py: a small client for the cadenza wire protocol, version 1 (docs/protocol.md).

Standard library only (socket, struct). Tensors are (dtype, shape, bytes) triples: dtype a
protocol name ("f32", "i64", ...), shape a tuple of ints, bytes little-endian row-major.
`array.array('f', ...)` or numpy's `.tobytes()` both produce the bytes.

    with Client("127.0.0.1:7070") as c:
        print(c.list_models())
        out = c.infer("tn", {"x": ("f32", (2, 8), data)})
        dtype, shape, raw = out["y"]

Server ERROR frames raise CadenzaError (code, name, retryable, message); framing or
connection problems raise ProtocolError / OSError.
"""
import socket
import struct

VERSION = 1
HEADER = struct.Struct("<4sHHIIQQQQB7x")  # 56 bytes
assert HEADER.size == 56
MAX_FRAME = 64 << 20

HELLO, WELCOME, INFER, STREAM_OPEN, STREAM_CHUNK, STREAM_CLOSE, CANCEL, LIST_MODELS, MODEL_LIST, RESULT, ERROR = range(1, 12)
FLAG_END_OF_STREAM, FLAG_CLOSING = 1, 2

DTYPES = ["f32", "f16", "bf16", "f64", "i64", "i32", "i16", "i8", "u8", "bool"]
DTYPE_SIZE = {"f32": 4, "f16": 2, "bf16": 2, "f64": 8, "i64": 8, "i32": 4, "i16": 2, "i8": 1, "u8": 1, "bool": 1}
STATUS = {1: "INVALID_ARGUMENT", 2: "UNKNOWN_MODEL", 3: "TOO_LARGE", 4: "BUSY", 5: "OUT_OF_MEMORY",
          6: "DEADLINE_EXCEEDED", 7: "CANCELLED", 8: "SHUTTING_DOWN", 9: "UNAUTHENTICATED",
          10: "UNSUPPORTED", 11: "IO", 12: "DEVICE", 13: "INTERNAL"}


class ProtocolError(Exception):
    """The peer sent something that is not version-1 protocol."""


class CadenzaError(Exception):
    """A typed ERROR frame from the server."""

    def __init__(self, code, retryable, message, request_id=0, closing=False):
        self.code = code
        self.name = STATUS.get(code, "UNKNOWN(%d)" % code)
        self.retryable = bool(retryable)
        self.message = message
        self.request_id = request_id
        self.closing = closing
        super().__init__("%s%s: %s" % (self.name, " (retryable)" if self.retryable else "", message))


def _pad(buf):
    """Zero bytes up to a multiple of 8 counted from the frame's start (56 = 0 mod 8)."""
    buf.extend(b"\0" * (-len(buf) % 8))


def _str(buf, s, lo=0, hi=1023):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    if not lo <= len(b) <= hi:
        raise ValueError("string %r: %d bytes, allowed %d..%d" % (s, len(b), lo, hi))
    buf.extend(struct.pack("<H", len(b)))
    buf.extend(b)


def _name(buf, s):
    b = s.encode("ascii")
    if not 1 <= len(b) <= 64 or any(c < 0x21 or c > 0x7E for c in b):
        raise ValueError("name %r: 1..64 printable ASCII characters without spaces" % s)
    _str(buf, b, 1, 64)


def _tensor(buf, name, t):
    dtype, shape, data = t
    if dtype not in DTYPE_SIZE:
        raise ValueError("tensor %s: unknown dtype %r" % (name, dtype))
    shape = tuple(int(d) for d in shape)
    if len(shape) > 6 or any(d < 0 for d in shape):
        raise ValueError("tensor %s: shape %r (at most 6 dims, each >= 0)" % (name, shape))
    n = DTYPE_SIZE[dtype]
    for d in shape:
        n *= d
    data = bytes(data)
    if len(data) != n:  # never guess, pad or truncate
        raise ValueError("tensor %s: %d bytes do not match %s%s = %d bytes" % (name, len(data), dtype, list(shape), n))
    _name(buf, name)
    buf.extend(struct.pack("<BB", DTYPES.index(dtype), len(shape)))
    for d in shape:
        buf.extend(struct.pack("<q", d))
    buf.extend(struct.pack("<Q", n))
    _pad(buf)
    buf.extend(data)


def encode(ftype, body=b"", request_id=0, stream_id=0, sequence=0, deadline_us=0, priority=0, flags=0):
    body = bytearray(body)
    _pad(body)
    return HEADER.pack(b"CDZP", VERSION, ftype, flags, len(body), request_id, stream_id, sequence,
                       deadline_us, priority) + bytes(body)


class _Reader:
    def __init__(self, body):
        self.b = body
        self.off = 0  # body offset == frame offset mod 8

    def take(self, fmt):
        v = struct.unpack_from("<" + fmt, self.b, self.off)
        self.off += struct.calcsize("<" + fmt)
        return v if len(v) > 1 else v[0]

    def str(self):
        n = self.take("H")
        s = self.b[self.off:self.off + n]
        if len(s) != n:
            raise ProtocolError("string runs past the body")
        self.off += n
        return s.decode("utf-8", "replace")

    def pad(self):
        self.off += -(self.off + HEADER.size) % 8

    def spec(self):
        name = self.str()
        code, ndim = self.take("BB")
        if code >= len(DTYPES) or ndim > 6:
            raise ProtocolError("spec %s: dtype %d, ndim %d" % (name, code, ndim))
        dims = tuple(self.take("q") for _ in range(ndim))
        return name, DTYPES[code], dims

    def tensor(self):
        name, dtype, dims = self.spec()
        nbytes = self.take("Q")
        n = DTYPE_SIZE[dtype]
        for d in dims:
            n *= d
        if n != nbytes:
            raise ProtocolError("tensor %s: nbytes %d does not match %s%s" % (name, nbytes, dtype, list(dims)))
        self.pad()
        data = self.b[self.off:self.off + nbytes]
        if len(data) != nbytes:
            raise ProtocolError("tensor %s: payload runs past the body" % name)
        self.off += nbytes
        return name, (dtype, dims, bytes(data))


def decode(header, body):
    """A received frame as a dict: the header fields plus the type's body fields."""
    magic, version, ftype, flags, blen, rid, sid, seq, deadline, prio = header
    m = {"type": ftype, "flags": flags, "request_id": rid, "stream_id": sid, "sequence": seq}
    r = _Reader(body)
    if ftype == WELCOME:
        m["max_body"], m["max_streams"] = r.take("IH")
        m["agent"] = r.str()
    elif ftype == ERROR:
        code, retryable, _ = r.take("HBB")
        m.update(code=code, retryable=bool(retryable), message=r.str())
    elif ftype == RESULT:
        m["queue_us"], m["compute_us"], n = r.take("QQH")
        m["outputs"] = dict(r.tensor() for _ in range(n))
    elif ftype == MODEL_LIST:
        models = []
        for _ in range(r.take("H")):
            name = r.str()
            mflags, n_in, n_out = r.take("HHH")
            ins = [r.spec() for _ in range(n_in)]
            outs = [r.spec() for _ in range(n_out)]
            models.append({"name": name, "infer": bool(mflags & 1), "stream": bool(mflags & 2),
                           "inputs": [{"name": s[0], "dtype": s[1], "shape": list(s[2])} for s in ins],
                           "outputs": [{"name": s[0], "dtype": s[1], "shape": list(s[2])} for s in outs]})
        m["models"] = models
    else:
        raise ProtocolError("unexpected frame type %d from the server" % ftype)
    return m


class Client:
    """One connection (TCP "HOST:PORT" or "unix:PATH"); HELLO is sent by the constructor."""

    def __init__(self, addr, api_key="", timeout=30.0, agent="cadenza-py-client/0.1"):
        if addr.startswith("unix:"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target = addr[5:]
        else:
            host, _, port = addr.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError("%r is not HOST:PORT or unix:PATH" % addr)
            self.sock = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET,
                                      socket.SOCK_STREAM)
            target = (host.strip("[]"), int(port))
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(target)
        except OSError as e:
            self.sock.close()
            raise OSError(e.errno, "cannot reach the server at %s: %s" % (addr, e.strerror)) from None
        self.next_id = 1
        body = bytearray()
        _str(body, api_key, 0, 256)
        _str(body, agent, 0, 128)
        self.sock.sendall(encode(HELLO, body, request_id=self._rid()))
        w = self.recv()
        if w["type"] == ERROR:
            raise CadenzaError(w["code"], w["retryable"], w["message"], w["request_id"], True)
        if w["type"] != WELCOME:
            raise ProtocolError("expected WELCOME, got type %d" % w["type"])
        self.max_body, self.max_streams, self.server_agent = w["max_body"], w["max_streams"], w["agent"]

    def _rid(self):
        rid = self.next_id
        self.next_id += 1
        return rid

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _read(self, n):
        out = bytearray()
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            out.extend(chunk)
        return bytes(out)

    def recv(self):
        """The next frame from the server, decoded (an ERROR is returned, not raised)."""
        h = HEADER.unpack(self._read(HEADER.size))
        if h[0] != b"CDZP" or h[1] != VERSION:
            raise ProtocolError("bad magic or version: %r %d" % (h[0], h[1]))
        if h[4] % 8 or h[4] > MAX_FRAME:
            raise ProtocolError("body length %d" % h[4])
        return decode(h, self._read(h[4]))

    def _await(self, rid):
        while True:
            m = self.recv()
            if m["type"] == ERROR and m["request_id"] in (rid, 0):
                raise CadenzaError(m["code"], m["retryable"], m["message"], m["request_id"],
                                   bool(m["flags"] & FLAG_CLOSING))
            if m["request_id"] == rid:
                return m

    def list_models(self):
        rid = self._rid()
        self.sock.sendall(encode(LIST_MODELS, request_id=rid))
        return self._await(rid)["models"]

    def infer_frame(self, model, inputs, outputs=(), request_id=None, deadline_us=0, priority=0):
        """The encoded INFER frame (for pipelining or malformed-frame tests)."""
        body = bytearray()
        _name(body, model)
        body.extend(struct.pack("<H", len(outputs)))
        for o in outputs:
            _name(body, o)
        body.extend(struct.pack("<H", len(inputs)))
        for name, t in inputs.items():
            _tensor(body, name, t)
        return encode(INFER, body, request_id=request_id or self._rid(), deadline_us=deadline_us,
                      priority=priority)

    def infer(self, model, inputs, outputs=(), deadline_us=0, priority=0):
        """inputs: {name: (dtype, shape, bytes)}; returns {name: (dtype, shape, bytes)}, every
        requested output (all of the model's when none are named)."""
        rid = self._rid()
        self.sock.sendall(self.infer_frame(model, inputs, outputs, rid, deadline_us, priority))
        res = self._await(rid)
        if res["type"] != RESULT:
            raise ProtocolError("expected RESULT, got type %d" % res["type"])
        self.last_timing = (res["queue_us"], res["compute_us"])
        return res["outputs"]

    def cancel(self, request_id):
        self.sock.sendall(encode(CANCEL, request_id=request_id))
