"""gpumarket: an open, permissionless market for GPU compute (off-chain side)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
