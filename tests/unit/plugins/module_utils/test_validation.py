"""The DNS-1123 label rule that names, namespaces and volume names share."""

from __future__ import annotations

import pytest
from ansible_collections.knlab.serverless.plugins.module_utils import _knative, _tekton
from ansible_collections.knlab.serverless.plugins.module_utils._errors import ServerlessError
from ansible_collections.knlab.serverless.plugins.module_utils._validation import is_dns1123_label


@pytest.mark.parametrize("name", ["a", "0", "hello-1", "a" * 63, "1-2-3"])
def test_valid_labels(name):
    assert is_dns1123_label(name)


@pytest.mark.parametrize("name", ["", "a" * 64, "-a", "a-", "Hello", "a.b", "a_b", "hello\n", None, 5])
def test_invalid_labels(name):
    assert not is_dns1123_label(name)


@pytest.mark.parametrize("name", ["hello\n", "a" * 64, "a_b"])
def test_every_caller_applies_the_same_rule(name):
    # Each caller keeps its own wording; the rule is the shared one.
    base = {"name": "hello", "namespace": "default", "state": "absent", "wait_timeout": 5}
    with pytest.raises(_knative.InvalidOption, match="is not a valid Knative Service name"):
        _knative.validate(base | {"name": name})
    with pytest.raises(_knative.InvalidOption, match="is not a valid DNS-1123 label"):
        _knative.validate(base | {"namespace": name})
    volume = {"name": name, "mount_path": "/v", "config_map": "c"}
    with pytest.raises(_knative.InvalidOption, match=r"volume name .* is not a valid DNS-1123 label"):
        _knative._check_volumes([volume])
    with pytest.raises(ServerlessError, match="is not a valid TaskRun name: use at most 63 lowercase"):
        _tekton.validate_name(name)
    with pytest.raises(ServerlessError, match=r"is not a valid namespace name \(DNS-1123 label\)"):
        _tekton.validate_namespace(name)
