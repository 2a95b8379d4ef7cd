#!/usr/bin/env bash
# bench/gpu_deps.sh: build .gpu-deps/, the Python packages a bare CUDA image lacks to run
# bench/gpu_check.sh and bench/gpu_phases.py, on a machine that can reach a package index.
#
# Usage: bench/gpu_deps.sh [PYTHON_VERSION]   (default 3.12, the CUDA image's python3)
#
# It installs the core package's dependencies (pyproject.toml, at the versions requirements.lock
# pins; numpy left out: the image's own build goes with its torch) as cp$VERSION manylinux x86_64
# wheels into .gpu-deps/, then removes the packages such an image already holds (aiohttp, anyio,
# httpx, jinja2, requests, pyyaml, ...: a copy here would shadow the image's) and the packages'
# tests and C sources, so the folder stays well under a device call's 64 MiB. gpu_check.sh puts
# .gpu-deps/ on PYTHONPATH when it exists; name it in the device call's `carry`, and keep it out
# of git (.git/info/exclude).

set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VERSION=${1:-3.12}
TARGET=$ROOT/.gpu-deps

mapfile -t DEPENDENCIES < <(python3 - <<'EOF'
import tomllib
for requirement in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    if not requirement.startswith("numpy"):
        print(requirement)
EOF
)

rm -rf "$TARGET"
python3 -m pip install --quiet --disable-pip-version-check --target "$TARGET" \
    --python-version "$VERSION" --implementation cp --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -c requirements.lock "${DEPENDENCIES[@]}"

cd "$TARGET"
# What the CUDA image already has (bench/GPU.md names the image).
for name in _yaml yaml aiohappyeyeballs aiohttp aiosignal anyio attr attrs certifi charset_normalizer \
    frozenlist h11 httpcore httpx idna jinja2 markupsafe multidict prometheus_client propcache regex \
    requests requests-stubs urllib3 toolz tlz yarl pynvml.py typing_extensions.py; do
    rm -rf "$name"
done
rm -rf bin docs example.py __pycache__ Crypto/SelfTest cytoolz/tests web3/_utils/module_testing
find . \( -name '*.c' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.pyi' -o -name '*.h' \) -delete
# The metadata of every package removed above goes too.
python3 - <<'EOF'
import glob, os, shutil
for info in glob.glob("*.dist-info"):
    record = os.path.join(info, "RECORD")
    tops = set()
    if os.path.exists(record):
        for line in open(record):
            top = line.split(",")[0].split("/")[0]
            if not top.endswith(".dist-info") and not top.startswith(".."):
                tops.add(top)
    if tops and not any(os.path.exists(top) for top in tops):
        shutil.rmtree(info)
EOF
echo "gpu_deps: $(du -sh "$TARGET" | cut -f1) in $TARGET"
