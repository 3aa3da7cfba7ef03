"""The build role's source checks (plugins/filter/build_source_problems.py).

They were five asserts in roles/build/tasks/source.yml, each stopping the run; the sentences are
the same, and a directory that can be read now has all of its problems named at once.
"""

from __future__ import annotations

import pytest
from ansible_collections.knlab.serverless.plugins.filter.build_source_problems import (
    CONFIGMAP_LIMIT,
    FilterModule,
    build_source_problems,
)

PATH = "/srv/hello"


def entry(name: str, isdir: bool = False, size: int = 10) -> dict:
    return {"name": name, "path": f"{PATH}/{name}", "isdir": isdir, "size": 4096 if isdir else size, "content": ""}


def listing(*entries: dict, error: str = "") -> dict:
    return {"path": PATH, "error": error, "entries": list(entries)}


def problems(source: dict, dockerfile: str = "Dockerfile") -> list[str]:
    return build_source_problems(source, PATH, dockerfile)


def test_the_filter_is_exported_under_its_name() -> None:
    assert FilterModule().filters() == {"build_source_problems": build_source_problems}


def test_a_flat_directory_with_its_dockerfile_has_no_problem() -> None:
    assert problems(listing(entry("Dockerfile"), entry("app.py"), entry(".dockerignore"))) == []
    assert problems(listing(entry("Containerfile")), "Containerfile") == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            listing(error=f"{PATH} is not a directory"),
            f"build_source_dir {PATH} cannot be used: {PATH} is not a directory.",
        ),
        (listing(), f"build_source_dir {PATH} cannot be used: it is empty."),
        (
            listing(entry("Dockerfile"), entry("lib", isdir=True), entry("Assets", isdir=True)),
            f"build_source_dir {PATH} has subdirectories (Assets, lib), but the source ConfigMap holds one flat"
            " directory: keep the build context's files at its top level.",
        ),
        (
            listing(entry("Dockerfile"), entry("b c"), entry("..a"), entry("A!")),
            f"These file names in {PATH} cannot be ConfigMap keys (letters, digits, '-', '_' and '.', at most 253"
            " characters, not starting with '..'): ..a, A!, b c.",
        ),
        (listing(entry("dockerfile")), f"build_source_dir {PATH} has no Dockerfile (build_dockerfile)."),
        (
            listing(entry("Dockerfile"), entry("blob", size=CONFIGMAP_LIMIT - 9)),
            f"The files in {PATH} add up to {CONFIGMAP_LIMIT + 1} bytes, more than the 1048576 bytes (1 MiB) a"
            " ConfigMap can hold.",
        ),
    ],
)
def test_each_problem_has_its_sentence(source: dict, expected: str) -> None:
    assert problems(source) == [expected]


def test_exactly_one_mib_fits_and_directories_do_not_count() -> None:
    source = listing(entry("Dockerfile"), entry("blob", size=CONFIGMAP_LIMIT - 10))
    assert problems(source) == []
    assert len(problems({**source, "entries": [*source["entries"], entry("d", isdir=True)]})) == 1


def test_a_directory_that_cannot_be_read_has_only_that_problem() -> None:
    found = problems(listing(error=f"{PATH} cannot be listed: Permission denied"), "Missingfile")
    assert found == [f"build_source_dir {PATH} cannot be used: {PATH} cannot be listed: Permission denied."]


def test_every_problem_of_a_readable_directory_is_named_in_order() -> None:
    found = problems(listing(entry("sub", isdir=True), entry("bad name"), entry("big", size=2 * CONFIGMAP_LIMIT)))
    assert [message.split(" ")[:2] for message in found] == [
        ["build_source_dir", PATH],  # has subdirectories
        ["These", "file"],
        ["build_source_dir", PATH],  # has no Dockerfile
        ["The", "files"],
    ]
    assert "has subdirectories (sub)" in found[0]
    assert "has no Dockerfile" in found[2]
