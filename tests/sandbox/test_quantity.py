"""Quantities in the API server's canonical form (apimachinery v0.34.4 CanonicalizeBytes).

The first rows were checked against the real cluster (tests/conformance/test_admission.py stores
them through a dry run): 1024Mi, 0.5Gi, 1000M, 0.5, 1000Mi, 1500m, 1.5Gi."""

from __future__ import annotations

import pytest
from knlab_sandbox.quantity import canonical_quantity, canonicalize_pod_spec, quantity_error

CANONICAL = [
    ("1024Mi", "1Gi"),
    ("0.5Gi", "512Mi"),
    ("1000M", "1G"),
    ("0.5", "500m"),
    ("1000Mi", "1000Mi"),
    ("1500m", "1500m"),
    ("1.5Gi", "1536Mi"),
    ("1500M", "1500M"),
    ("2000", "2k"),
    ("1500", "1500"),
    ("1e3", "1e3"),
    ("12e2", "1200"),
    ("0.1", "100m"),
    ("1.5Ki", "1536"),
    ("1023Mi", "1023Mi"),
    ("0Mi", "0"),
    ("0.0000000001", "1n"),
    ("-1Gi", "-1Gi"),
    ("1.5G", "1500M"),
]


@pytest.mark.parametrize(("written", "stored"), CANONICAL)
def test_canonical_form(written: str, stored: str) -> None:
    assert canonical_quantity(written) == stored
    assert canonical_quantity(stored) == stored  # canonical is a fixed point


@pytest.mark.parametrize("text", ["half", "", "1 Gi", "1GB", "Gi", "1.2.3"])
def test_not_a_quantity(text: str) -> None:
    assert canonical_quantity(text) is None
    assert quantity_error(text)


def test_a_pod_spec_is_canonicalised_in_place() -> None:
    spec = {
        "containers": [{"resources": {"limits": {"memory": "1024Mi"}, "requests": {"cpu": "0.5"}}}],
        "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "0.5Gi"}}],
    }
    canonicalize_pod_spec(spec)
    assert spec["containers"][0]["resources"] == {"limits": {"memory": "1Gi"}, "requests": {"cpu": "500m"}}
    assert spec["volumes"][0]["emptyDir"]["sizeLimit"] == "512Mi"
