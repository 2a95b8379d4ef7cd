"""Hypothesis profiles for the test suites.

``quick`` runs on every ``make test``; ``thorough`` is for ``make fuzz``. The root
tests/conftest.py calls ``register_profiles()``; the profile is picked by the
environment variable GPUMARKET_HYPOTHESIS_PROFILE (default ``quick``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

ENV_VAR = "GPUMARKET_HYPOTHESIS_PROFILE"
DEFAULT_PROFILE = "quick"
PROFILES = ("quick", "thorough")


def register_profiles() -> str:
    """Register the ``quick`` and ``thorough`` profiles and load the selected one.

    Returns the name of the loaded profile. Raises ValueError for an unknown name.
    """
    settings.register_profile(
        "quick",
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile(
        "thorough",
        max_examples=500,
        stateful_step_count=50,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    name = os.environ.get(ENV_VAR, "").strip() or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(f"{ENV_VAR}={name!r}: unknown hypothesis profile (one of {', '.join(PROFILES)})")
    settings.load_profile(name)
    return name
