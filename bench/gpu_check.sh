#!/usr/bin/env bash
# bench/gpu_check.sh: the GPU check of gpumarket.measure, for a machine WITH an NVIDIA GPU.
#
# Usage: bench/gpu_check.sh [OUTPUT.json]
#   OUTPUT defaults to $OUT/gpu_check.json when $OUT is set, else bench/gpu_check.json.
#
# It installs nothing. Python is $GPU_CHECK_PYTHON if set, else the repo's .venv when there is one,
# else python3 on PATH (on a stock CUDA image, the one that holds torch); gpumarket is imported
# from offchain/ directly.
# A folder .gpu-deps/ in the repo root, if present, goes on PYTHONPATH: carry the packages a
# bare CUDA image lacks (the gpumarket CLI imports the whole core package: web3, pydantic, the
# eth-* packages, starlette, uvicorn, ...) as such a folder, made where there is network by
# bench/gpu_deps.sh (about 47 MB).
#
# Steps, each under `timeout` (40 + 40 + 120 + 150 + 90 + 90 s by default, under 9 minutes in all):
#   1. packages: which of torch (and whether it sees CUDA), nvidia-ml-py, numpy, pytest, and the
#      CLI's pydantic, eth-utils, eth-abi, eth-keys and click import, with their versions;
#   2. inventory: gpumarket.measure.inventory.detect() (runs with or without a GPU);
#   3. GPU tests (under $GPU_CHECK_TESTS_TIMEOUT seconds, default 120): pytest tests/offchain/measure -m "gpu or torch" (the GPU tests and every torch
#      prover test; conftest lookup cut at that folder, so the chain fixtures of tests/conftest.py
#      are not loaded);
#   4. benchmark: python -m gpumarket bench challenge --json --backend torch --trials
#      $GPU_CHECK_TRIALS (default 20; the cheating runs dominate its time at the H100/H200 class's
#      sizes), under $GPU_CHECK_BENCH_TIMEOUT seconds (default 150);
#   4b. phases: python -m bench.gpu_phases (each phase of a challenge round timed alone with CUDA
#      events), under $GPU_CHECK_PHASES_TIMEOUT seconds (default 90); CUDA only, skipped in a dry run;
#   5. container: where podman and an NVIDIA CDI specification exist (nvidia-ctk cdi generate),
#      a container given only the CDI device nvidia.com/gpu=0, as the agent gives a job its GPU,
#      must see exactly one GPU and compute a CUDA matmul that equals the CPU's. No registry is
#      needed: the container's root filesystem is this machine's own, read-only (podman --rootfs),
#      so its python and torch are the ones step 1 found. Skipped, saying why, without podman or CDI.
# It then writes ONE JSON object: {ok, dry_run, reason, python, packages, inventory, tests,
# benchmark, phases, container, seconds}.
#
# Without a CUDA device it writes the JSON with the inventory (which says why: no NVML library,
# no driver, no device, or a CPU-only torch), skips steps 3 and 4, prints "no CUDA device: ..."
# and exits 2. GPU_CHECK_CPU=1 instead runs every step on the CPU as a dry run of this script
# (tests skip, the benchmark uses --backend numpy) and marks the JSON dry_run.
#
# Exit status: 0 every step passed; 1 a step failed; 2 no CUDA device; 3 a step failed while
# packages were missing (the JSON's reason lists them).

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [[ $# -ge 1 ]]; then
    OUTPUT=$1
elif [[ -n "${OUT:-}" ]]; then
    OUTPUT=$OUT/gpu_check.json
else
    OUTPUT=$ROOT/bench/gpu_check.json
fi
mkdir -p "$(dirname "$OUTPUT")"

if [[ -n "${GPU_CHECK_PYTHON:-}" ]]; then
    PY=$GPU_CHECK_PYTHON
elif [[ -x "$ROOT/.venv/bin/python" ]]; then
    PY=$ROOT/.venv/bin/python
else
    PY=$(command -v python3 || true)
fi
if [[ -z "$PY" ]]; then
    echo "gpu_check: no python3 on PATH and no .venv" >&2
    exit 3
fi

export PYTHONPATH="$ROOT/offchain${PYTHONPATH:+:$PYTHONPATH}"
if [[ -d "$ROOT/.gpu-deps" ]]; then
    PYTHONPATH="$PYTHONPATH:$ROOT/.gpu-deps"
fi
export PYTHONDONTWRITEBYTECODE=1

DRY_RUN=${GPU_CHECK_CPU:-0}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
STATUS=0

say() { echo "gpu_check: $*" >&2; }

# ---------------------------------------------------------------- 1. packages
timeout 40 "$PY" - >"$WORK/packages.json" 2>"$WORK/packages.log" <<'EOF'
import importlib, importlib.metadata, json
out = {}
for module, dist in [("torch", "torch"), ("pynvml", "nvidia-ml-py"), ("numpy", "numpy"), ("pytest", "pytest"),
                     ("pydantic", "pydantic"), ("eth_utils", "eth-utils"), ("eth_abi", "eth-abi"),
                     ("eth_keys", "eth-keys"), ("click", "click")]:
    try:
        importlib.import_module(module)
    except Exception as error:  # report any failure to import, whatever it is
        out[dist] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
        continue
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:  # importable from a path but not installed
        version = None
    out[dist] = {"ok": True, "version": version}
if out["torch"]["ok"]:
    import torch
    out["torch"]["cuda_build"] = torch.version.cuda
    out["torch"]["cuda_available"] = torch.cuda.is_available()
    out["torch"]["device_count"] = torch.cuda.device_count() if torch.cuda.is_available() else 0
print(json.dumps(out))
EOF
[[ -s "$WORK/packages.json" ]] || echo '{}' >"$WORK/packages.json"
missing=$("$PY" -c 'import json,sys; p=json.load(open(sys.argv[1])); print(" ".join(k for k,v in p.items() if not v["ok"]))' "$WORK/packages.json" 2>/dev/null)
say "python $PY; missing packages: ${missing:-none}"

# ---------------------------------------------------------------- 2. inventory
timeout 40 "$PY" -c 'from gpumarket.measure.inventory import detect; print(detect().to_json(indent=None))' \
    >"$WORK/inventory.json" 2>"$WORK/inventory.log"
INVENTORY_RC=$?
[[ $INVENTORY_RC -eq 0 ]] || { say "inventory failed (exit $INVENTORY_RC): $(tail -n 3 "$WORK/inventory.log")"; STATUS=1; }

CUDA_REASON=$("$PY" - "$WORK/inventory.json" "$WORK/packages.json" <<'EOF'
import json, sys
try:
    inv = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print("the inventory could not be taken"); raise SystemExit
torch = json.load(open(sys.argv[2])).get("torch", {})
if inv["nvml"]["status"] != "ok":
    print(f"NVML {inv['nvml']['status']}: {inv['nvml']['detail']}; torch: {inv['torch']['detail']}")
elif not torch.get("cuda_available"):
    print(f"NVML lists {len(inv['nvml']['gpus'])} GPU(s) but torch has no CUDA: {inv['torch']['detail']}")
EOF
)

RUN_GPU_STEPS=1
REASON=""
if [[ -n "$CUDA_REASON" && "$DRY_RUN" != 1 ]]; then
    RUN_GPU_STEPS=0
    REASON="no CUDA device: $CUDA_REASON"
    STATUS=2
fi

# ---------------------------------------------------------------- 3. GPU tests
TESTS_RC=skipped
if [[ $RUN_GPU_STEPS == 1 ]]; then
    timeout "${GPU_CHECK_TESTS_TIMEOUT:-120}" "$PY" -m pytest tests/offchain/measure -m "gpu or torch" -q -rs -p no:cacheprovider \
        --confcutdir=tests/offchain/measure --junitxml="$WORK/junit.xml" >"$WORK/tests.log" 2>&1
    TESTS_RC=$?
    [[ $TESTS_RC -eq 0 ]] || { say "GPU tests failed (exit $TESTS_RC): $(tail -n 3 "$WORK/tests.log")"; STATUS=1; }
fi

# ---------------------------------------------------------------- 4. benchmark
BENCH_RC=skipped
if [[ $RUN_GPU_STEPS == 1 ]]; then
    BACKEND=torch
    [[ -n "$CUDA_REASON" ]] && BACKEND=numpy  # only in a dry run: there is no CUDA for torch
    timeout "${GPU_CHECK_BENCH_TIMEOUT:-150}" "$PY" -m gpumarket bench challenge --json --backend "$BACKEND" \
        --trials "${GPU_CHECK_TRIALS:-20}" \
        >"$WORK/bench.json" 2>"$WORK/bench.log"
    BENCH_RC=$?
    [[ $BENCH_RC -eq 0 ]] || { say "benchmark failed (exit $BENCH_RC): $(tail -n 3 "$WORK/bench.log")"; STATUS=1; }
fi

# ---------------------------------------------------------------- 4b. phases of a round
PHASES_RC=skipped
if [[ $RUN_GPU_STEPS == 1 && -z "$CUDA_REASON" ]]; then
    timeout "${GPU_CHECK_PHASES_TIMEOUT:-90}" "$PY" -m bench.gpu_phases --out "$WORK/phases.json" \
        >/dev/null 2>"$WORK/phases.log"
    PHASES_RC=$?
    [[ $PHASES_RC -eq 0 ]] || { say "phases failed (exit $PHASES_RC): $(tail -n 3 "$WORK/phases.log")"; STATUS=1; }
fi

# ---------------------------------------------------------------- 5. a CUDA job in a container
CONTAINER_RC=skipped
CONTAINER_WHY=""
if [[ $RUN_GPU_STEPS != 1 || -n "$CUDA_REASON" ]]; then
    CONTAINER_WHY="no CUDA device"
elif ! command -v podman >/dev/null 2>&1; then
    CONTAINER_WHY="podman is not installed"
elif ! (nvidia-ctk cdi list 2>/dev/null | grep -q "nvidia.com/gpu=0"); then
    CONTAINER_WHY="no CDI device nvidia.com/gpu=0 (install the NVIDIA Container Toolkit, then nvidia-ctk cdi generate)"
else
    CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf} timeout 90 podman run --rm \
        --read-only --network none --cap-drop all --security-opt no-new-privileges \
        --device nvidia.com/gpu=0 --env PYTHONDONTWRITEBYTECODE=1 --rootfs / "$PY" -c '
import json, torch
a = torch.randint(-8, 8, (2048, 2048), dtype=torch.float32)
b = torch.randint(-8, 8, (2048, 2048), dtype=torch.float32)
gpu = (a.cuda() @ b.cuda()).cpu()
print(json.dumps({"visible_gpus": torch.cuda.device_count(), "name": torch.cuda.get_device_name(0),
                  "matmul_equals_cpu": bool(torch.equal(gpu, a @ b))}))' \
        >"$WORK/container.json" 2>"$WORK/container.log"
    CONTAINER_RC=$?
    if [[ $CONTAINER_RC -eq 0 ]] && ! "$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r["visible_gpus"] == 1 and r["matmul_equals_cpu"] else 1)' "$WORK/container.json"; then
        CONTAINER_RC=1
    fi
    [[ $CONTAINER_RC -eq 0 ]] || { say "container check failed (exit $CONTAINER_RC): $(tail -n 3 "$WORK/container.log")"; STATUS=1; }
fi
[[ -z "$CONTAINER_WHY" ]] || say "container check skipped: $CONTAINER_WHY"

# A failure where packages are missing is most likely theirs: say so.
if [[ $STATUS == 1 && -n "$missing" ]]; then
    STATUS=3
    REASON="missing packages: $missing (carry them as .gpu-deps, see the top of bench/gpu_check.sh)"
fi

# ---------------------------------------------------------------- the JSON
"$PY" - "$WORK" "$OUTPUT" "$STATUS" "$DRY_RUN" "$REASON" "$PY" "$TESTS_RC" "$BENCH_RC" "$(($(date +%s) - START))" \
    "$CONTAINER_RC" "$CONTAINER_WHY" "$PHASES_RC" <<'EOF'
import json, sys
import xml.etree.ElementTree as ET
from pathlib import Path

(work, output, status, dry_run, reason, python, tests_rc, bench_rc, seconds, container_rc, container_why,
 phases_rc) = sys.argv[1:]
work = Path(work)


def load(name):
    try:
        return json.loads((work / name).read_text())
    except (OSError, ValueError):
        return None


def tail(name, lines=30):
    try:
        return (work / name).read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def tests():
    if tests_rc == "skipped":
        return {"ran": False}
    summary = {"ran": True, "exit_code": int(tests_rc), "log_tail": tail("tests.log")}
    try:
        root = ET.parse(work / "junit.xml").getroot()
    except (OSError, ET.ParseError):
        return summary
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    cases = []
    for case in suite.iter("testcase"):
        outcome, message = "passed", None
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome, message = tag, node.get("message")
        cases.append({"name": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                      "seconds": float(case.get("time", 0)), "message": message})
    summary.update(counts, cases=cases, seconds=float(suite.get("time", 0)))
    return summary


def step(rc, name):
    """A step that wrote NAME.json, with its log's tail when it failed."""
    if rc == "skipped":
        return {"ran": False}
    result = load(f"{name}.json")
    return {"ran": True, "exit_code": int(rc), "result": result,
            "log_tail": tail(f"{name}.log") if result is None or rc != "0" else []}


def container():
    if container_rc == "skipped":
        return {"ran": False, "reason": container_why}
    return {"ran": True, "exit_code": int(container_rc), "result": load("container.json"),
            "log_tail": tail("container.log") if container_rc != "0" else []}


inventory = load("inventory.json")
report = {
    "ok": status == "0",
    "exit_status": int(status),
    "dry_run": dry_run == "1",
    "reason": reason or None,
    "python": python,
    "packages": load("packages.json"),
    "inventory": inventory if inventory is not None else {"error": tail("inventory.log")},
    "tests": tests(),
    "benchmark": step(bench_rc, "bench"),
    "phases": step(phases_rc, "phases"),
    "container": container(),
    "seconds": int(seconds),
}
Path(output).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
EOF

say "wrote $OUTPUT"
if [[ $STATUS == 2 ]]; then
    echo "$REASON" >&2
fi
exit "$STATUS"
