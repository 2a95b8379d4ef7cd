"""Fast view calls for the state machine's invariants.

The invariants read every provider, job, claimable balance and wallet after every step
(about fifty calls). Through ape each call costs ~1.5 ms; straight into titanoboa's EVM
with eth_abi it costs ~0.3 ms, which is what keeps the quick profile under its budget.
On any other provider (e.g. `--network ethereum:local:foundry`) this falls back to ape.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from eth_abi import decode, encode
from eth_utils import keccak, to_checksum_address


def _canonical(parameter) -> str:
    """ABI type of one input or output, tuples spelt out: `(uint256,address)`."""
    if parameter.type.startswith("tuple"):
        inner = ",".join(_canonical(component) for component in parameter.components)
        return f"({inner}){parameter.type[len('tuple') :]}"
    return parameter.type


def _normalize(abi_type: str, value: Any) -> Any:
    # eth_abi gives lower-case addresses; ape gives checksummed ones: compare like with like.
    if abi_type == "address":
        return to_checksum_address(value)
    return value


class ViewReader:
    """Calls view functions of ape contracts; structs come back as attribute namespaces."""

    def __init__(self, chain) -> None:
        provider = chain.provider
        self._env = provider.env if getattr(provider, "name", None) == "boa" else None
        self._methods: dict[tuple[str, str], tuple[bytes, list[str], Any]] = {}

    def __call__(self, contract, name: str, *args: Any) -> Any:
        if self._env is None:
            return getattr(contract, name)(*args)
        selector, input_types, output = self._method(contract, name)
        computation = self._env.execute_code(
            to_address=contract.address,
            data=selector + encode(input_types, [str(a) if hasattr(a, "address") else a for a in args]),
            is_modifying=False,
        )
        if computation.is_error:
            raise AssertionError(f"view {name}{args} reverted")
        (value,) = decode([_canonical(output)], computation.output)
        return self._shape(output, value)

    def _method(self, contract, name: str) -> tuple[bytes, list[str], Any]:
        key = (str(contract.address), name)
        if key not in self._methods:
            (abi,) = [m for m in contract.contract_type.view_methods if m.name == name]
            assert len(abi.outputs) == 1, f"{name}: only single-output views are supported"
            input_types = [_canonical(parameter) for parameter in abi.inputs]
            selector = keccak(text=f"{name}({','.join(input_types)})")[:4]
            self._methods[key] = (selector, input_types, abi.outputs[0])
        return self._methods[key]

    def _shape(self, output, value: Any) -> Any:
        if output.type != "tuple":
            return _normalize(output.type, value)
        return SimpleNamespace(
            **{
                component.name: _normalize(_canonical(component), field)
                for component, field in zip(output.components, value, strict=True)
            }
        )
