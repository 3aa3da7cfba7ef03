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
