"""gpumarket.testing.hypothesis_profiles: profile registration and selection."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from gpumarket.testing import hypothesis_profiles


@pytest.fixture
def restore_profile():
    previous = settings.get_current_profile_name()
    yield
    settings.load_profile(previous)


@pytest.mark.parametrize("name", ["quick", "thorough"])
def test_env_var_selects_the_profile(monkeypatch, restore_profile, name):
    monkeypatch.setenv(hypothesis_profiles.ENV_VAR, name)
    assert hypothesis_profiles.register_profiles() == name
    assert settings.get_current_profile_name() == name


def test_default_is_quick(monkeypatch, restore_profile):
    monkeypatch.delenv(hypothesis_profiles.ENV_VAR, raising=False)
    assert hypothesis_profiles.register_profiles() == "quick"


def test_profile_values(monkeypatch, restore_profile):
    monkeypatch.delenv(hypothesis_profiles.ENV_VAR, raising=False)
    hypothesis_profiles.register_profiles()
    quick = settings.get_profile("quick")
    assert quick.max_examples == 25
    assert quick.deadline is None
    assert HealthCheck.too_slow in quick.suppress_health_check
    thorough = settings.get_profile("thorough")
    assert thorough.max_examples == 500
    assert thorough.stateful_step_count == 50
    assert thorough.deadline is None


def test_unknown_profile_is_an_error(monkeypatch, restore_profile):
    monkeypatch.setenv(hypothesis_profiles.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="GPUMARKET_HYPOTHESIS_PROFILE='fast': unknown hypothesis profile"):
        hypothesis_profiles.register_profiles()
