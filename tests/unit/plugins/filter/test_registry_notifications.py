"""registry_notifications_secret in the registry role's input checks (plugins/filter/registry_input_problems.py)."""

from __future__ import annotations

import pytest
from ansible_collections.knlab.serverless.plugins.filter.registry_input_problems import registry_input_problems
from test_registry_input_problems import VALID


def test_absent_or_empty_is_no_notifications() -> None:
    without = {key: value for key, value in VALID.items() if key != "registry_notifications_secret"}
    assert registry_input_problems(without) == []
    assert registry_input_problems({**VALID, "registry_notifications_secret": ""}) == []
    assert registry_input_problems({**VALID, "registry_notifications_secret": "hub-notifications"}) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"registry_notifications_secret": "Hub"}, "registry_notifications_secret must be a DNS-1123 subdomain"),
        ({"registry_notifications_secret": ["x"]}, "registry_notifications_secret must be"),
        (
            {
                "registry_notifications_secret": "hub-notifications",
                "registry_env": {"registry_notifications_endpoints": "- name: x"},
            },
            "registry_env must not set REGISTRY_NOTIFICATIONS_ENDPOINTS together with registry_notifications_secret",
        ),
    ],
)
def test_bad_values_are_named(changes: dict, expected: str) -> None:
    found = registry_input_problems({**VALID, **changes})
    assert len(found) == 1
    assert found[0].startswith(expected)


def test_the_variable_may_be_set_by_hand_without_the_option() -> None:
    env = {"REGISTRY_NOTIFICATIONS_ENDPOINTS": "- name: x\n  url: http://x/events"}
    assert registry_input_problems({**VALID, "registry_env": env}) == []


def test_the_log_level_is_empty_or_a_level() -> None:
    without = {key: value for key, value in VALID.items() if key != "registry_log_level"}
    assert registry_input_problems(without) == []
    for level in ("", "error", "warn", "info", "debug"):
        assert registry_input_problems({**VALID, "registry_log_level": level}) == []
    # A level by hand in registry_env, without the option, is the user's choice (it wins).
    assert registry_input_problems({**VALID, "registry_env": {"REGISTRY_LOG_LEVEL": "info"}}) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"registry_log_level": "loud"},
            'registry_log_level must be empty or one of error, warn, info, debug, got "loud"',
        ),
        ({"registry_log_level": "WARN"}, "registry_log_level must be empty or one of"),
        ({"registry_log_level": ["warn"]}, "registry_log_level must be empty or one of"),
        (
            {"registry_log_level": "warn", "registry_env": {"registry_log_level": "info"}},
            "registry_env must not set REGISTRY_LOG_LEVEL together with registry_log_level",
        ),
    ],
)
def test_bad_log_levels_are_named(changes: dict, expected: str) -> None:
    found = registry_input_problems({**VALID, **changes})
    assert len(found) == 1, found
    assert found[0].startswith(expected)
