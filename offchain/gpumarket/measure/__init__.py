"""Measurement: the GPU class table, the timed throughput challenge, hardware inventory and
job metering. Importing this package never imports torch; the torch prover loads it lazily."""

from gpumarket.measure.classes import GPU_CLASSES, GpuClass, class_by_id, class_by_name, class_for_device_name

__all__ = ["GPU_CLASSES", "GpuClass", "class_by_id", "class_by_name", "class_for_device_name"]
