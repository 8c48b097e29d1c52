#!/usr/bin/env bash
# Installs what weights-tools/ (cadenza-convert, make_demucs_reference.py) and the Python tests
# in tests/models/ need, on Debian (bookworm): Debian's own PyTorch (CPU) and the PyPI `demucs`
# package for its model code, WITHOUT letting pip pull a second PyTorch.
#
#   weights-tools/setup-python.sh          idempotent and quiet; run as root (CI is)
#
# What and why:
#   apt   python3-torch, python3-numpy            the reference framework, CPU
#         python3-torchaudio                      openunmix (imported by demucs.htdemucs) imports it
#         python3-yaml, python3-tqdm              demucs.repo / demucs.apply
#         python3-omegaconf                       demucs.states (serialize_model)
#         python3-retrying, python3-cloudpickle,
#         python3-typing-extensions               dora (demucs.states imports dora.log) and submitit
#   pip --no-deps (pure Python; nothing else is resolved, so no torch wheel is ever fetched):
#         demucs==4.0.1 (the model code), einops, julius, openunmix, dora-search, treetable, submitit
set -euo pipefail

PY=/usr/bin/python3
APT_PKGS=(python3 python3-pip python3-numpy python3-torch python3-torchaudio python3-yaml
          python3-tqdm python3-omegaconf python3-retrying python3-cloudpickle
          python3-typing-extensions)
PIP_PKGS=(demucs==4.0.1 einops==0.8.2 julius==0.2.8 openunmix==1.3.0 dora-search==0.1.13
          treetable==0.2.6 submitit==1.5.4)

check() {
    "$PY" - <<'EOF' 2>/dev/null
import demucs, demucs.htdemucs, demucs.apply, demucs.states, demucs.repo, demucs.pretrained
import torch, numpy, yaml
assert demucs.__version__ == "4.0.1", demucs.__version__
EOF
}

if [ -x "$PY" ] && check; then
    exit 0
fi

missing=()
for p in "${APT_PKGS[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup-python: apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian marks its Python as externally managed (PEP 668): pip needs --break-system-packages,
# which older pips do not know.
brk=()
if "$PY" -m pip install --help 2>/dev/null | grep -q -- --break-system-packages; then
    brk=(--break-system-packages)
fi
echo "setup-python: pip install --no-deps ${PIP_PKGS[*]}"
PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install -q --no-deps --disable-pip-version-check \
    "${brk[@]}" "${PIP_PKGS[@]}"

if ! check; then
    echo "setup-python: demucs still cannot be imported with $PY:" >&2
    "$PY" -c "import demucs.htdemucs, demucs.apply, demucs.states" >&2 || true
    exit 1
fi
echo "setup-python: ok ($("$PY" -c 'import torch, demucs; print("torch", torch.__version__, "demucs", demucs.__version__)'))"
