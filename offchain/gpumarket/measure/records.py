"""Strict JSON parsing of the measurement records (frozen dataclasses).

pydantic is imported only when a record is parsed, so detecting hardware and metering a job
need nothing beyond the standard library and nvidia-ml-py: bench/gpu_check.sh runs them on a
stock CUDA image that has no chain stack installed.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pydantic import TypeAdapter

__all__ = ["STRICT", "parse_json"]

T = TypeVar("T")

# Set as ``__pydantic_config__`` on each record class (what ``pydantic.with_config`` sets):
# no "5" for 5 and no unknown fields, so a parsed record holds exactly what was sent.
STRICT: dict[str, Any] = {"strict": True, "extra": "forbid"}


@functools.cache
def _adapter(cls: type[Any]) -> TypeAdapter[Any]:
    from pydantic import TypeAdapter

    return TypeAdapter(cls)


def parse_json(cls: type[T], text: str | bytes) -> T:
    """``cls`` from JSON text; pydantic's ValidationError (a ValueError) names any bad field."""
    adapter: TypeAdapter[T] = _adapter(cls)  # type: ignore[arg-type]  # a class is Hashable; mypy misses it for type[T]
    return adapter.validate_json(text)
