"""test_python_client.py: bench/cadenza_client.py against a real `cadenza serve` process.

Starts `cadenza serve --model tn=builtin:testnet --listen 127.0.0.1:0 --admin off --devices cpu`
(binary: $CADENZA_BIN, else build/cadenza, else build/lead/cadenza; skipped visibly when none),
then: HELLO/WELCOME, LIST_MODELS, INFER checked against a pure-Python testnet (models/testnet.c's
seeded weights, exact GELU), the C client (`cadenza client infer`) giving the same bytes,
typed errors (unknown model, bad input, local size check), SIGTERM -> exit 0.
Last line: "N passed, M failed, K skipped".
"""
import array
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import cadenza_client as cc  # noqa: E402

passed = failed = skipped = 0


def check(what, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("  ok %s" % what)
    else:
        failed += 1
        print("FAIL %s %s" % (what, detail))


def skip(what, why):
    global skipped
    skipped += 1
    print("SKIP %s: %s" % (what, why))


# ---- testnet in pure Python (models/testnet.c: D=8, H=16, splitmix64 seed 0x7e57e7) ----
D, H = 8, 16
M64 = (1 << 64) - 1


def _weights():
    state = [0x7E57E7]

    def sm64():
        state[0] = (state[0] + 0x9E3779B97F4A7C15) & M64
        z = state[0]
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def draw(n):  # rounded to f32 like the C model's storage
        return list(array.array("f", [(sm64() >> 11) / 9007199254740992.0 - 0.5 for _ in range(n)]))

    w1, w2, b1, b2 = draw(H * D), draw(D * H), draw(H), draw(D)
    return w1, w2, b1, b2


W1, W2, B1, B2 = _weights()


def testnet(x, rows):
    y = []
    for r in range(rows):
        hid = []
        for j in range(H):
            v = B1[j] + sum(W1[j * D + k] * x[r * D + k] for k in range(D))
            hid.append(0.5 * v * (1.0 + math.erf(v / math.sqrt(2.0))))
        for i in range(D):
            y.append(B2[i] + sum(W2[i * H + j] * hid[j] for j in range(H)))
    return y


def find_binary():
    cands = [os.environ.get("CADENZA_BIN")] if os.environ.get("CADENZA_BIN") else []
    cands += [os.path.join(ROOT, "build", "cadenza"), os.path.join(ROOT, "build", "lead", "cadenza")]
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def main():
    binary = find_binary()
    if not binary:
        skip("python client vs cadenza serve", "no cadenza binary (set CADENZA_BIN or build build/cadenza)")
        return
    print("# server binary: %s" % binary)
    # serve refuses unknown CADENZA_* variables (docs/configuration.md): CADENZA_BIN is ours
    env = {k: v for k, v in os.environ.items() if k != "CADENZA_BIN"}
    proc = subprocess.Popen([binary, "serve", "--model", "tn=builtin:testnet", "--listen", "127.0.0.1:0",
                             "--admin", "off", "--devices", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    addr = None
    t0 = time.time()
    lines = []
    while time.time() - t0 < 30:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"cadenza serve: listening on (\S+)", line)
        if m:
            addr = m.group(1)
            break
    check("server starts and prints its address", addr is not None, "".join(lines[-5:]))
    if not addr:
        proc.kill()
        return
    import threading  # keep reading the server's log so it never blocks on a full pipe
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    try:
        run(binary, addr)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = "timeout"
        check("SIGTERM -> exit 0", rc == 0, "rc %s" % rc)


def run(binary, addr):
    with cc.Client(addr, timeout=20) as c:
        check("WELCOME", c.max_body >= 1024 and c.server_agent.startswith("cadenza/"),
              "%r %r" % (c.max_body, c.server_agent))
        models = c.list_models()
        tn = [m for m in models if m["name"] == "tn"]
        check("LIST_MODELS has tn with x/y specs",
              len(tn) == 1 and tn[0]["inputs"] == [{"name": "x", "dtype": "f32", "shape": [-1, 8]}]
              and tn[0]["outputs"][0]["name"] == "y", repr(models))

        rows = 7
        x = array.array("f", [math.sin(0.37 * i) * 1.5 for i in range(rows * D)])
        out = c.infer("tn", {"x": ("f32", (rows, D), x.tobytes())})
        dtype, shape, raw = out["y"]
        check("RESULT y f32[7,8]", dtype == "f32" and shape == (rows, D) and len(raw) == rows * D * 4,
              "%s %s %d" % (dtype, shape, len(raw)))
        y = array.array("f")
        y.frombytes(raw)
        ref = testnet(list(x), rows)
        err = max(abs(a - b) / (1 + abs(b)) for a, b in zip(y, ref))
        check("y == pure-Python testnet (1e-5)", err <= 1e-5 and all(math.isfinite(v) for v in y), "err %g" % err)
        out2 = c.infer("tn", {"x": ("f32", (rows, D), x.tobytes())}, outputs=("y",))
        check("a second call gives the same bytes", out2["y"][2] == raw)

        # the C client on the same input gives the same bytes
        has_client = subprocess.run([binary, "client", "--help"], capture_output=True).returncode == 0
        if not has_client:
            skip("C client vs Python client", "%s has no 'client' command (stale build?)" % binary)
        with tempfile.TemporaryDirectory() as tmp:
            if has_client:
                xp = os.path.join(tmp, "x.f32")
                with open(xp, "wb") as f:
                    f.write(x.tobytes())
                r = subprocess.run([binary, "client", "infer", "-m", "tn", "--input", "x=%s:%dx%d" % (xp, rows, D),
                                    "-o", tmp, "--server", addr], capture_output=True, text=True, timeout=60)
                ok = r.returncode == 0 and os.path.exists(os.path.join(tmp, "y.f32"))
                check("cadenza client infer exits 0", ok, r.stderr)
                if ok:
                    with open(os.path.join(tmp, "y.f32"), "rb") as f:
                        check("C client and Python client agree (bytes)", f.read() == raw)
                r = subprocess.run([binary, "client", "models", "--server", addr], capture_output=True, text=True,
                                   timeout=60)
                check("cadenza client models lists tn", r.returncode == 0 and '"name":"tn"' in r.stdout, r.stdout + r.stderr)

        # typed errors; the connection stays usable after each
        def expect(what, code, fn):
            try:
                fn()
                check(what, False, "no error")
            except cc.CadenzaError as e:
                check(what, e.name == code and e.retryable is False and e.message, "%s" % e)

        expect("unknown model -> UNKNOWN_MODEL", "UNKNOWN_MODEL",
               lambda: c.infer("nope", {"x": ("f32", (1, D), bytes(4 * D))}))
        expect("wrong width -> INVALID_ARGUMENT", "INVALID_ARGUMENT",
               lambda: c.infer("tn", {"x": ("f32", (2, 7), bytes(4 * 14))}))
        expect("wrong input name -> INVALID_ARGUMENT", "INVALID_ARGUMENT",
               lambda: c.infer("tn", {"z": ("f32", (1, D), bytes(4 * D))}))
        expect("unknown output -> INVALID_ARGUMENT", "INVALID_ARGUMENT",
               lambda: c.infer("tn", {"x": ("f32", (1, D), bytes(4 * D))}, outputs=("nope",)))
        try:
            c.infer("tn", {"x": ("f32", (2, D), bytes(12))})
            check("size not matching shape refused locally", False, "sent")
        except ValueError:
            check("size not matching shape refused locally", True)
        out3 = c.infer("tn", {"x": ("f32", (rows, D), x.tobytes())})
        check("connection still serves after errors", out3["y"][2] == raw)

    try:
        cc.Client("127.0.0.1:1", timeout=5)
        check("unreachable server raises", False)
    except OSError as e:
        check("unreachable server raises naming the address", "127.0.0.1:1" in str(e), str(e))


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # a crash is a failure, never a silent pass
        import traceback
        traceback.print_exc()
        failed += 1
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    sys.exit(1 if failed else 0)
