"""The differential suite: scenarios written once, run on the sandbox or on the real cluster.

    pytest tests/conformance --target sandbox     # or KNLAB_CONFORMANCE_TARGET=cluster
    make conformance                              # both, then tests/conformance/compare.py

A scenario asserts only what must hold everywhere (a call ended, an object exists) and *records*
what it observes with ``observe(key, value)``: conditions, reasons, step states, names, whether
the API accepted something. Values are made target-neutral first (no timestamps, no digests'
hex, no domains). The observations go to ``.build/conformance/<target>.json``; compare.py sets the
sandbox's beside the cluster's, the oracle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from targets import ROOT, Target, open_target

RESULTS = ROOT / ".build" / "conformance"
_observed: dict[str, Any] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--target",
        default=os.environ.get("KNLAB_CONFORMANCE_TARGET", "sandbox"),
        choices=("sandbox", "cluster"),
        help="where the scenarios run (default: $KNLAB_CONFORMANCE_TARGET or sandbox)",
    )


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    opened = open_target(request.config.getoption("--target"))
    try:
        yield opened
    finally:
        opened.close()


WORK_NAMESPACE = "knlab-conformance"


@pytest.fixture(scope="session")
def work_namespace(target: Target) -> Iterator[str]:
    """A namespace for what the scenarios create besides the demo (which lives in `default`, where
    the cluster's hub NodePort points): deleted at the end, so that nothing a scenario made is
    left for the tests that run next (tests/cluster expects `default` to hold the demo only)."""
    target.kubectl("delete", "namespace", WORK_NAMESPACE, "--ignore-not-found", "--wait=true", timeout=600)
    target.kubectl("create", "namespace", WORK_NAMESPACE)
    try:
        yield WORK_NAMESPACE
    finally:
        target.kubectl("delete", "namespace", WORK_NAMESPACE, "--wait=false", check=False)


@pytest.fixture
def observe(request: pytest.FixtureRequest) -> Callable[[str, Any], None]:
    """observe(key, value): one observation of this scenario, under "<test name>.<key>"."""
    scenario = request.node.name.removeprefix("test_")

    def record(key: str, value: Any) -> None:
        name = f"{scenario}.{key}"
        assert name not in _observed, f"{name} observed twice"
        _observed[name] = value

    return record


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not _observed:
        return
    name = session.config.getoption("--target")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(dict(sorted(_observed.items())), indent=1, sort_keys=True) + "\n")


def conditions(obj: dict) -> dict[str, str]:
    """{type: "status/reason"} of an object's conditions (reason empty when there is none)."""
    return {
        c["type"]: f"{c.get('status', '')}/{c.get('reason', '')}" for c in obj.get("status", {}).get("conditions", [])
    }


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "conformance: a scenario of the differential suite")


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    return Path(__file__).parent
