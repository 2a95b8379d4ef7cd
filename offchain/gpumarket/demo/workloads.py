"""The demo client's jobs: small real computations, each a few seconds of one CPU core.

Each workload is a Python program run by the provider as ``python -c PROGRAM PARAMS_JSON``
(as a host process: the interpreter running the demo, so it exists on the provider's machine,
the same one; in a container: the image's ``python3``). It
writes ``result.json``; ``check`` reads the verified result bundle and says what is wrong with
it, if anything, doing far less work than the job did (a product, a short Collatz chain, the
first digits of pi).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpumarket.agentapi.result import ResultBundle
from gpumarket.agentapi.spec import AnyJobSpec, ContainerJobSpec, ContainerLimits, JobSpec, Limits

__all__ = ["OUTPUT", "WORKLOADS", "Workload", "workload"]

OUTPUT = "result.json"
MAX_SECONDS = 60
MAX_OUTPUT_BYTES = 1 << 20
CONTAINER_MEMORY_BYTES = 512 << 20  # the largest workload (pi's big integers) needs a few tens of MiB

_COLLATZ = """
import json, sys
limit = json.loads(sys.argv[1])["limit"]
lengths = {1: 1}
best = (1, 1)
for start in range(2, limit):
    n, path = start, []
    while n not in lengths:
        path.append(n)
        n = n // 2 if n % 2 == 0 else 3 * n + 1
    length = lengths[n]
    for x in reversed(path):
        length += 1
        if x < limit:
            lengths[x] = length
    if length > best[1]:
        best = (start, length)
json.dump({"limit": limit, "start": best[0], "length": best[1]}, open("result.json", "w"))
print(f"longest Collatz chain below {limit}: {best[0]} ({best[1]} terms)")
"""

_PI = """
import json, sys
sys.set_int_max_str_digits(0)
digits = json.loads(sys.argv[1])["digits"]
def arctan_inv(x, one):
    total = term = one // x
    x2, k, sign = x * x, 1, -1
    while term:
        term //= x2
        total += sign * (term // (2 * k + 1))
        sign, k = -sign, k + 1
    return total
one = 10 ** (digits + 10)
pi = str(4 * (4 * arctan_inv(5, one) - arctan_inv(239, one)) // 10**10)
json.dump({"digits": digits, "pi": pi[0] + "." + pi[1:]}, open("result.json", "w"))
print(f"pi to {digits} decimals: {pi[0]}.{pi[1:11]}...{pi[-10:]}")
"""

_FACTOR = """
import json, sys
n = json.loads(sys.argv[1])["n"]
p = 2 if n % 2 == 0 else 3
while n % p:
    p += 2
json.dump({"n": n, "factors": [p, n // p]}, open("result.json", "w"))
print(f"{n} = {p} x {n // p}")
"""


def _pi_prefix(decimals: int) -> str:
    """pi to `decimals` decimals (Machin's formula, as the job computes it)."""
    one: int = 10 ** (decimals + 10)

    def arctan_inv(x: int) -> int:
        total = term = one // x
        k, sign = 1, -1
        while term:
            term //= x * x
            total += sign * (term // (2 * k + 1))
            sign, k = -sign, k + 1
        return total

    text = str(4 * (4 * arctan_inv(5) - arctan_inv(239)) // 10**10)
    return text[0] + "." + text[1:]


def _collatz_length(start: int) -> int:
    length, n = 1, start
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        length += 1
    return length


def _check_collatz(params: dict[str, Any], result: dict[str, Any]) -> str | None:
    start, length = result.get("start"), result.get("length")
    if result.get("limit") != params["limit"] or not isinstance(start, int) or not 1 <= start < params["limit"]:
        return f"result {result} is not for a start below {params['limit']}"
    if _collatz_length(start) != length:
        return f"the chain from {start} has {_collatz_length(start)} terms, the result says {length}"
    return None


def _check_pi(params: dict[str, Any], result: dict[str, Any]) -> str | None:
    pi = result.get("pi")
    if not isinstance(pi, str) or len(pi) != params["digits"] + 2:
        return f"expected pi with {params['digits']} decimals"
    # The first 500 decimals are checked (cheap); the job computed them all the same way.
    if pi[:502] != _pi_prefix(500):
        return "the digits of pi are wrong"
    return None


def _check_factor(params: dict[str, Any], result: dict[str, Any]) -> str | None:
    factors = result.get("factors")
    if not (isinstance(factors, list) and len(factors) == 2 and all(isinstance(f, int) and f > 1 for f in factors)):
        return f"expected two factors > 1, got {factors!r}"
    if factors[0] * factors[1] != params["n"]:
        return f"{factors[0]} x {factors[1]} != {params['n']}"
    return None


@dataclass(frozen=True)
class Workload:
    """One job's program, its parameters, and the check of its result."""

    name: str
    program: str
    params: dict[str, Any] = field(hash=False)
    checker: Callable[[dict[str, Any], dict[str, Any]], str | None] = field(hash=False, repr=False)

    def spec(self, image: str | None = None, gpu_count: int = 1) -> AnyJobSpec:
        """A host-process spec (version 1) running this interpreter, or with ``image`` (pinned by
        digest, with python3 on its PATH) a container spec (version 2) for ``gpu_count`` GPUs."""
        params = json.dumps(self.params, sort_keys=True)
        if image is None:
            return JobSpec(
                command=[sys.executable, "-c", self.program, params],
                limits=Limits(max_seconds=MAX_SECONDS, max_output_bytes=MAX_OUTPUT_BYTES),
                outputs=[OUTPUT],
            )
        return ContainerJobSpec(
            image=image,
            command=["python3", "-c", self.program, params],
            gpu_count=gpu_count,
            limits=ContainerLimits(
                max_seconds=MAX_SECONDS, max_output_bytes=MAX_OUTPUT_BYTES, max_memory_bytes=CONTAINER_MEMORY_BYTES
            ),
            outputs=[OUTPUT],
        )

    def check(self, bundle: ResultBundle) -> str | None:
        """None when the (already hash-verified) bundle holds a right answer, else why not."""
        if bundle.manifest.exit_code != 0:
            return f"the job exited with {bundle.manifest.exit_code}"
        raw = bundle.contents.get(f"outputs/{OUTPUT}")
        if raw is None:
            return f"the result has no {OUTPUT}"
        try:
            result = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return f"{OUTPUT} is not JSON: {error}"
        if not isinstance(result, dict):
            return f"{OUTPUT} is not an object"
        return self.checker(self.params, result)


# Sized for one to three seconds of a core on a 2-core CI machine (more while oracles challenge).
WORKLOADS: tuple[Workload, ...] = (
    Workload("collatz", _COLLATZ, {"limit": 1_500_000}, _check_collatz),
    Workload("pi", _PI, {"digits": 50_000}, _check_pi),
    # 59,999,999 and 79,999,987 are prime: trial division runs to the smaller one.
    Workload("factor", _FACTOR, {"n": 59_999_999 * 79_999_987}, _check_factor),
    Workload("collatz", _COLLATZ, {"limit": 1_200_000}, _check_collatz),
)


def workload(index: int) -> Workload:
    """The workload of the story's job number `index` (cycling through WORKLOADS)."""
    return WORKLOADS[index % len(WORKLOADS)]
