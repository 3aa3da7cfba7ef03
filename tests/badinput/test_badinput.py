"""Bad input is refused before the first request: a seeded sample of generated calls, every target.

``make badinput`` runs CI's fixed sample (``BADINPUT_COUNT`` cases drawn with ``BADINPUT_SEED``);
``make badinput-full`` (``BADINPUT_ALL=1``) runs every generated case.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from campaign import DEFAULT_COUNT, DEFAULT_SEED, describe, run, summary
from cases import MODULES, ROLES, Case, all_cases, generate

SEED = int(os.environ.get("BADINPUT_SEED", DEFAULT_SEED))
COUNT = None if os.environ.get("BADINPUT_ALL") else int(os.environ.get("BADINPUT_COUNT", DEFAULT_COUNT))
TARGETS = {f"knlab.serverless.{name}" for name in MODULES} | {f"role:{name}" for name in ROLES}


@pytest.fixture(scope="module")
def sample() -> list[Case]:
    return generate(SEED, COUNT)


def test_the_sample_is_fixed_by_its_seed_and_covers_every_target(sample):
    assert [case.ident for case in generate(SEED, COUNT)] == [case.ident for case in sample]
    assert len(sample) >= min(300, len(all_cases()))
    assert {case.target for case in sample} == TARGETS
    families = Counter(case.family.split(":")[0] for case in sample)
    assert set(families) == {"type", "kind", "conflict"}, families


def test_the_recorder_sees_what_a_valid_call_sends(tmp_path: Path):
    # The campaign counts on the recorder: a valid call must show up in it, or "0 requests"
    # below would prove nothing.
    valid = Case(
        "knlab.serverless.knative_service",
        "name",
        ("name",),
        {"name": "hello", "namespace": "default", "image": "registry.example/hello:v1", "wait": False},
        "control",
        ident="9999",
    )
    [verdict] = run([valid], tmp_path, workers=1)
    assert verdict.failed  # the recorder serves nothing
    assert verdict.requests, "a valid call reached the recorder without being recorded"


# The sample takes about 90 s; every case (make badinput-full) about 10 min on 2 cores.
@pytest.mark.timeout(300 if COUNT is not None else 3600)
def test_bad_input_is_refused_before_any_request(sample, tmp_path: Path):
    verdicts = run(sample, tmp_path)
    line = summary(verdicts)
    print(line)
    bad = [describe(verdict) for verdict in verdicts if verdict.problems]
    assert not bad, line + "\n" + "\n".join(bad)
    per_target = Counter(verdict.case.target for verdict in verdicts)
    assert set(per_target) == TARGETS
