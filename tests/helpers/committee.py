"""The test oracle committee lives in the package (the walkthrough and bench use it too)."""

from gpumarket.testing.committee import Committee, hardware_report, job_report, oracle_key

__all__ = ["Committee", "hardware_report", "job_report", "oracle_key"]
