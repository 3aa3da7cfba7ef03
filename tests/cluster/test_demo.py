"""playbooks/demo.yml, unchanged, on the real cluster: Knative Serving, Traefik, Tekton and kaniko
built here, the hub on a real PVC (local-path-provisioner). In order, as a user would go:

1. a clean slate (cleanup.yml removes what an earlier run left);
2. check mode reports changes and writes nothing (every write in the API server's audit log is a
   dry run) and leaves no object;
3. the demo: a real kaniko build in a TaskRun, the app answers through the ingress;
4. again: changed=0, no new TaskRun, no new Revision;
5. an edited source: exactly one new TaskRun and one new Revision, and the new answer;
6. the hub's pod deleted: with its PVC no image is lost (test_hub.py has the case without one);
7. cleanup twice: nothing of the demo is left, the second run changes nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import ROOT, Cluster

SOURCE = ROOT / "playbooks" / "files" / "hello"

pytestmark = pytest.mark.timeout(1800)


def _edited_source(directory: Path, greeting: str) -> Path:
    copy = shutil.copytree(SOURCE, directory / "hello")
    app = copy / "app.py"
    original = app.read_text()
    edited = original.replace('f"Hello {target}!\\n"', f'f"{greeting} {{target}}!\\n"')
    assert edited != original, "the demo app's greeting line moved: update this test"
    app.write_text(edited)
    return copy


def _replace_the_hub_pod(cluster: Cluster) -> None:
    """Delete the hub's pod and wait until a new one (Knative keeps one replica) is Ready."""
    old_pods = cluster.names("pods", selector="serving.knative.dev/service=hub")
    cluster.kubectl("delete", "pod", "-l", "serving.knative.dev/service=hub", "--wait=true")
    cluster.wait(
        lambda: (
            (pods := cluster.names("pods", selector="serving.knative.dev/service=hub"))
            and set(pods).isdisjoint(old_pods)
        ),
        "a new hub pod",
    )
    cluster.kubectl("wait", "pod", "-l", "serving.knative.dev/service=hub", "--for=condition=Ready", "--timeout=180s")


def test_demo_on_the_real_cluster(cluster: Cluster, tmp_path: Path) -> None:
    # 1. Whatever an earlier run left is removed (the cluster keeps its etcd across up/down).
    cluster.playbook("cleanup.yml")
    # Pods of revisions deleted earlier may still be in their grace period.
    cluster.wait(lambda: cluster.demo_objects() == {}, "an empty default namespace", 360)

    # 2. Check mode: changes announced, only dry runs sent, nothing created.
    line = cluster.audit_lines()
    check = cluster.playbook("demo.yml", "--check")
    assert check.changed > 0
    writes = cluster.writes_since(line)
    assert writes, "check mode sent no dry-run write at all"
    assert [w["requestURI"] for w in writes if "dryRun=All" not in w["requestURI"]] == []
    assert cluster.demo_objects() == {}

    # 3. The demo for real.
    first = cluster.playbook("demo.yml")
    assert first.changed > 0
    assert cluster.answer("hello") == "Hello World!\n"
    taskruns, revisions = cluster.builds_and_revisions()
    assert len(taskruns) == 1
    assert revisions == ["hello-00001", "hub-00001"]
    taskrun = cluster.json("get", "taskrun", taskruns[0])
    assert taskrun["status"]["conditions"][0]["status"] == "True"
    image = cluster.json("get", "ksvc", "hello")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith(cluster.env["DEMO_REGISTRY_PULL_HOST"] + "/hello@sha256:")
    claim = cluster.json("get", "pvc", "hub-data")
    assert claim["status"]["phase"] == "Bound"

    # 4. Again: nothing changes, no build, no revision; check mode agrees. The build found was
    # reused after the hub, asked through Traefik, said its image is there.
    again = cluster.playbook("demo.yml")
    assert again.changed == 0
    assert "Check that the image of the build found is still in the hub" in again.output
    assert "without knowing whether its image is still in the hub" not in again.output
    assert cluster.builds_and_revisions() == (taskruns, revisions)
    assert cluster.playbook("demo.yml", "--check").changed == 0

    # 5. An edited source: one build, one revision, the new answer.
    source = _edited_source(tmp_path, "Greetings from the edited source,")
    cluster.playbook("demo.yml", "-e", f"demo_source_dir={source}")
    new_taskruns, new_revisions = cluster.builds_and_revisions()
    assert len(set(new_taskruns) - set(taskruns)) == 1 and set(taskruns) <= set(new_taskruns)
    assert new_revisions == ["hello-00001", "hello-00002", "hub-00001"]
    assert cluster.answer("hello") == "Greetings from the edited source, World!\n"

    # 6. The hub's pod goes away; on its PVC the images stay (the same tags, served by the new pod).
    before = cluster.exec("curl", "-fsS", f"http://{cluster.env['DEMO_REGISTRY_PULL_HOST']}/v2/hello/tags/list")
    _replace_the_hub_pod(cluster)
    after = cluster.wait(
        lambda: cluster.exec(
            "curl", "-fsS", f"http://{cluster.env['DEMO_REGISTRY_PULL_HOST']}/v2/hello/tags/list", check=False
        ),
        "the new hub pod to answer",
    )
    assert after == before

    # 7. Cleanup, twice.
    assert cluster.playbook("cleanup.yml").changed > 0
    assert cluster.demo_objects() == {}
    assert cluster.playbook("cleanup.yml").changed == 0


def test_a_build_whose_image_left_the_hub_is_built_again(cluster: Cluster) -> None:
    # Issue 8 item 14: a hub without a volume loses its images with its pod; the TaskRun that built
    # the source is still there, and reusing it would leave the app in ImagePullBackOff.
    cluster.playbook("cleanup.yml")
    ephemeral = ("-e", "demo_registry_persistence=false")
    cluster.playbook("demo.yml", *ephemeral)
    [first], _ = cluster.builds_and_revisions()
    _replace_the_hub_pod(cluster)
    again = cluster.playbook("demo.yml", *ephemeral)
    assert "Remove the build found, its image is no longer in the hub" in again.output
    [second], _ = cluster.builds_and_revisions()
    assert second != first
    assert cluster.answer("hello") == "Hello World!\n"
    assert cluster.playbook("cleanup.yml").changed > 0
    cluster.wait(lambda: cluster.demo_objects() == {}, "the demo's pods to go", 180)
