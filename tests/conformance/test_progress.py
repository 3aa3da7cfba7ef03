"""Progress lines in the output of a real play, while a build and a rollout wait (issue 9 item 1).

The action plugins of tekton_taskrun_wait and knative_service print what the wait sees as it
changes (plugins/plugin_utils/_progress.py). The default callback prints a task's result line
when the task has ended: progress lines between the task's header and its result line were
printed while it ran.
"""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[1] / "playbooks" / "files" / "hello"
NAME = "cp-progress"


def _task_output(output: str, title: str) -> str:
    """The lines between ``TASK [... title]`` and the task's result line."""
    start = output.find(title)
    assert start >= 0, f"no task {title!r} in the play's output:\n{output[-3000:]}"
    body = output[start:].split("\n", 1)[1]
    result = re.search(r"^(ok|changed|fatal): \[localhost\]", body, re.MULTILINE)
    assert result, f"task {title!r} has no result line:\n{body[:3000]}"
    return body[: result.start()]


def test_build_and_rollout_progress(target, observe, work_namespace, tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(SOURCE, source)
    # A new source each time, so the build really runs instead of being reused.
    (source / "app.py").write_text((SOURCE / "app.py").read_text() + f"\n# {uuid.uuid4().hex}\n")
    if target.name == "cluster":  # the playbook runs inside the cluster's namespace: same host paths
        tmp_path.chmod(0o755)
        source.chmod(0o755)
    done = target.playbook(
        HERE / "playbooks" / "progress.yml",
        *("-e", f"build_name={NAME}", "-e", f"build_source_dir={source}"),
        env={"DEMO_NAMESPACE": work_namespace},
    )
    assert done.returncode == 0, done.output[-4000:]

    build = _task_output(done.output, "Wait for the build]")
    run = re.search(rf"^\[({NAME}-build-\w+)\] TaskRun {work_namespace}/\1: Succeeded=", build, re.MULTILINE)
    observe("build.names_the_taskrun", bool(run))
    taskrun = run.group(1) if run else "?"
    observe("build.ends_succeeded", f"[{taskrun}] TaskRun {work_namespace}/{taskrun}: Succeeded=True" in build)
    observe("build.step_states", re.findall(rf"^\[{taskrun}\] step build-and-push: (\w+)", build, re.MULTILINE)[-1:])
    observe("build.log_lines", bool(re.search(rf"^\[{taskrun}/build-and-push\] \S", build, re.MULTILINE)))

    rollout = _task_output(done.output, "TASK [Run it]")
    observe("rollout.revision", f"[{NAME}] rolling out revision {NAME}-00001" in rollout)
    observe("rollout.conditions", bool(re.search(rf"^\[{NAME}\] .*Ready=", rollout, re.MULTILINE)))
    observe(
        "rollout.pods", bool(re.search(rf"^\[{NAME}\] pod {NAME}-00001-\S+: user-container ", rollout, re.MULTILINE))
    )
    observe(
        "rollout.url", bool(re.search(rf"^\[{NAME}\] ready: http://{NAME}\.{work_namespace}\.", rollout, re.MULTILINE))
    )
    target.module("knative_service", name=NAME, namespace=work_namespace, state="absent")
