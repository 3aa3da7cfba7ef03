"""The whole demo against a real sandbox, shown by the tools rather than claimed.

One fresh sandbox (the `knlab-sandbox` CLI, a temp state dir, random ports), prepared as an admin
would (playbooks/sandbox-prepare.yml), then:

1. check mode: reports changes and writes nothing (every write in the request log is a dry run);
2. the demo: the app answers through the gateway; the real run changes what check mode said;
3. again: PLAY RECAP changed=0, no new TaskRun, no new Revision; check mode agrees (changed=0);
   and once more after `knlab-sandbox down` + `up` (what `make demo-down` + `make demo` do);
4. an edited copy of the source (demo_source_dir): exactly one new TaskRun and one new Revision,
   and the app answers with the new text;
5. cleanup: no demo object left; a second cleanup changes nothing.

And presenter mode (demo_interactive, no terminal): the reused build named as the cluster has it,
and the kubectl-like views equal what kubectl itself prints.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from sandbox_cli import ROOT, SandboxCLI, run_play, sandbox_env

kubernetes = pytest.importorskip("kubernetes")

PLAYBOOKS = ROOT / "playbooks"
SOURCE = PLAYBOOKS / "files" / "hello"
NAMESPACE = "default"
DEMO_LABEL = "app.kubernetes.io/managed-by=knlab.serverless"
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

pytestmark = pytest.mark.needs_docker_registry


@dataclass
class Run:
    changed: int
    output: str


class Sandbox(SandboxCLI):
    """One sandbox through its CLI, with a Kubernetes client; `up` again after `down` keeps its
    objects (new random ports)."""

    def __init__(self, state_dir: Path):
        super().__init__(state_dir)
        self.api: kubernetes.client.ApiClient | None = None

    def up(self) -> None:
        super().up()
        self.api = kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))

    def down(self) -> None:
        if self.api is not None:
            self.api.close()
            self.api = None
        super().down()

    def playbook(self, name: str, *args: str, env: dict[str, str] | None = None) -> Run:
        # The sandbox's kubeconfig carries its CA inline: every client writes it to a temp file while
        # a task runs. The play gets a temp dir of its own, which must be empty again when it ends.
        temp = self.state_dir.parent / "tmp"
        temp.mkdir(exist_ok=True)
        run_env = sandbox_env(self.kubeconfig, DEMO_INGRESS_ADDRESS=self.gateway, TMPDIR=str(temp), **(env or {}))
        code, output = run_play([str(PLAYBOOKS / name), *args], run_env, timeout=240)
        assert code == 0, f"{name} {' '.join(args)} failed:\n{output[-4000:]}"
        assert _left_in(temp) == [], f"{name} {' '.join(args)} left temp files behind"
        recap = re.search(r"^localhost\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", output, re.M)
        assert recap, f"no PLAY RECAP for localhost in:\n{output[-2000:]}"
        return Run(int(recap.group(1)), output)


def _left_in(temp: Path) -> list[str]:
    """Files left in a play's temp dir, but for kubernetes.core's discovery cache (k8srcp-*.json), kept on purpose."""
    return sorted(p.name for p in temp.iterdir() if not (p.name.startswith("k8srcp-") and p.suffix == ".json"))


@pytest.fixture
def sandbox_class() -> type[Sandbox]:
    return Sandbox  # for conftest.py's sandbox fixture


def _custom(sandbox: Sandbox, group: str, plural: str) -> list[str]:
    found = kubernetes.client.CustomObjectsApi(sandbox.api).list_namespaced_custom_object(
        group, "v1", NAMESPACE, plural
    )
    return sorted(item["metadata"]["name"] for item in found["items"])


def _builds_and_revisions(sandbox: Sandbox) -> tuple[list[str], list[str]]:
    return _custom(sandbox, "tekton.dev", "taskruns"), _custom(sandbox, "serving.knative.dev", "revisions")


def _demo_objects(sandbox: Sandbox) -> dict[str, list[str]]:
    core = kubernetes.client.CoreV1Api(sandbox.api)
    objects = {
        plural: _custom(sandbox, "serving.knative.dev", plural)
        for plural in ("services", "configurations", "revisions", "routes")
    }
    objects |= {plural: _custom(sandbox, "tekton.dev", plural) for plural in ("taskruns", "tasks")}
    objects["configmaps"] = [
        c.metadata.name for c in core.list_namespaced_config_map(NAMESPACE, label_selector=DEMO_LABEL).items
    ]
    objects["pvcs"] = [c.metadata.name for c in core.list_namespaced_persistent_volume_claim(NAMESPACE).items]
    objects["pods"] = [p.metadata.name for p in core.list_namespaced_pod(NAMESPACE).items]
    return {kind: names for kind, names in objects.items() if names}


def _answer(sandbox: Sandbox, name: str = "hello") -> str:
    service = kubernetes.client.CustomObjectsApi(sandbox.api).get_namespaced_custom_object(
        "serving.knative.dev", "v1", NAMESPACE, "services", name
    )
    host = service["status"]["url"].split("://", 1)[1]
    request = urllib.request.Request(sandbox.gateway + "/", headers={"Host": host})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read().decode()


def _edited_source(directory: Path, greeting: str) -> Path:
    copy = shutil.copytree(SOURCE, directory / "hello")
    app = copy / "app.py"
    original = app.read_text()
    edited = original.replace('f"Hello {target}!\\n"', f'f"{greeting} {{target}}!\\n"')
    assert edited != original, "the demo app's greeting line moved: update this test"
    app.write_text(edited)
    return copy


def test_demo_is_idempotent_rebuilds_on_change_and_cleans_up(sandbox: Sandbox, tmp_path: Path) -> None:
    assert sandbox.playbook("sandbox-prepare.yml").changed == 1
    assert sandbox.playbook("sandbox-prepare.yml").changed == 0

    # 1. Check mode on the fresh sandbox: the changes a real run makes, as dry runs only.
    seen = len(sandbox.request_log())
    check = sandbox.playbook("demo.yml", "--check")
    writes = [r for r in sandbox.request_log()[seen:] if r["method"] in WRITE_METHODS]
    assert writes, "check mode sent no dry-run write at all"
    assert [r for r in writes if "dryRun=All" not in r["query"]] == []
    assert _demo_objects(sandbox) == {}

    # 2. The demo for real: what check mode announced, and the app answers.
    first = sandbox.playbook("demo.yml")
    assert first.changed == check.changed > 0
    assert _answer(sandbox) == "Hello World!\n"
    taskruns, revisions = _builds_and_revisions(sandbox)
    assert len(taskruns) == 1
    assert sorted(revisions) == ["hello-00001", "hub-00001"]

    # 3. Again with the same source: nothing changes, no build, no revision; check mode agrees.
    again = sandbox.playbook("demo.yml")
    assert again.changed == 0
    # The build found was reused after the hub said its image is there (issue 8 item 14).
    assert "Check that the image of the build found is still in the hub" in again.output
    assert "without knowing whether its image is still in the hub" not in again.output
    assert _builds_and_revisions(sandbox) == (taskruns, revisions)
    assert sandbox.playbook("demo.yml", "--check").changed == 0
    sandbox.down()
    sandbox.up()
    assert sandbox.playbook("demo.yml").changed == 0
    assert _builds_and_revisions(sandbox) == (taskruns, revisions)
    assert _answer(sandbox) == "Hello World!\n"

    # 4. Edited source: one build, one revision, the new answer.
    source = _edited_source(tmp_path, "Greetings from the edited source,")
    sandbox.playbook("demo.yml", "-e", f"demo_source_dir={source}")
    new_taskruns, new_revisions = _builds_and_revisions(sandbox)
    assert len(set(new_taskruns) - set(taskruns)) == 1 and set(taskruns) <= set(new_taskruns)
    assert set(new_revisions) - set(revisions) == {"hello-00002"}
    assert _answer(sandbox) == "Greetings from the edited source, World!\n"

    # 5. Cleanup leaves nothing the demo made; a second one changes nothing.
    assert sandbox.playbook("cleanup.yml").changed > 0
    assert sandbox.playbook("cleanup.yml").changed == 0
    deadline = time.monotonic() + 30
    while (left := _demo_objects(sandbox)) and time.monotonic() < deadline:
        time.sleep(0.2)  # pods of deleted revisions may take a moment to go
    assert left == {}
    assert not (sandbox.state_dir / "volumes" / NAMESPACE / "hub-data").exists(), "the hub's images outlived its claim"


def _task_outcomes(output: str) -> list[str]:
    """Each task's name and outcome, in order, from a play's default output."""
    outcomes, task = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            task = line[6 : line.rfind("]")]
        elif match := re.match(r"(ok|changed|skipping|fatal|failed): \[localhost\]", line):
            outcomes.append(f"{task}: {match.group(1)}")
    return outcomes


def test_the_modules_answer_the_same_in_a_fork_and_in_a_process_of_their_own(sandbox: Sandbox, tmp_path: Path) -> None:
    """The collection's modules run in a fork of the controller when they can (plugins/plugin_utils/_fork.py);
    KNLAB_SERVERLESS_FORK=0 runs them the way Ansible runs any module. Both must give the same results:
    a first run, a re-run, check mode with --diff, and a module that refuses its input."""
    sandbox.playbook("sandbox-prepare.yml")
    fork, own = {"KNLAB_SERVERLESS_FORK": "1"}, {"KNLAB_SERVERLESS_FORK": "0"}
    first = sandbox.playbook("demo.yml", "-vvv", env=fork)
    forked = first.output.count("in a fork of the controller")
    assert forked >= 6, f"only {forked} module runs in a fork:\n{first.output[-3000:]}"
    assert "AnsiballZ_knative_service" not in first.output
    runs = {}
    for label, env in (("fork", fork), ("own", own)):
        runs[label] = [
            sandbox.playbook("demo.yml", "-vvv", env=env),
            sandbox.playbook("demo.yml", "--check", "--diff", env=env),
        ]
    assert "in a fork of the controller" not in runs["own"][0].output
    assert "AnsiballZ_knative_service" in runs["own"][0].output
    for fork_run, own_run in zip(runs["fork"], runs["own"], strict=True):
        assert fork_run.changed == own_run.changed == 0
        assert _task_outcomes(fork_run.output) == _task_outcomes(own_run.output)

    # Refusals by the modules themselves: the same one-line messages, no traceback, either way.
    play = tmp_path / "refusals.yml"
    play.write_text(REFUSALS)
    messages = []
    for env in (fork, own):
        temp = sandbox.state_dir.parent / "tmp"
        code, output = run_play([str(play)], sandbox_env(sandbox.kubeconfig, TMPDIR=str(temp), **env), timeout=240)
        assert code == 0, output[-3000:]
        assert "Traceback" not in output
        messages.append(re.findall(r'"msg": "refused: (.*)"$', output, re.M))
        # A module's warning shows either way (a fork of the worker must not send it to the controller's Display).
        assert "[WARNING]: Both option validate_certs and its alias verify_ssl are set." in output
        assert _left_in(temp) == []
    assert messages[0] == messages[1]
    assert len(messages[0]) == 3, messages


REFUSALS = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - knlab.serverless.knative_service: {name: 1svc, image: "registry.example/app:1"}
      ignore_errors: true
      register: one
    - knlab.serverless.kube_objects: {read: [{kind: ConfigMap, api_version: v1}]}
      ignore_errors: true
      register: two
    - knlab.serverless.tekton_taskrun_wait: {name: missing-run, namespace: default, timeout: 2}
      ignore_errors: true
      register: three
    - knlab.serverless.kube_objects: {read: [], validate_certs: true, verify_ssl: true}
    - ansible.builtin.debug: {msg: "refused: {{ item.msg }}"}
      loop: [ "{{ one }}", "{{ two }}", "{{ three }}" ]
      loop_control: {label: x}
"""


def test_a_build_whose_image_left_the_hub_is_built_again(sandbox: Sandbox) -> None:
    # A hub without a volume loses its images with its pod (here: with the sandbox's restart). The
    # TaskRun that built the source is still there; reusing it would leave the app without an image.
    sandbox.playbook("sandbox-prepare.yml")
    sandbox.playbook("demo.yml", "-e", "demo_registry_persistence=false")
    [first] = _builds_and_revisions(sandbox)[0]
    sandbox.down()
    sandbox.up()
    # Presenter mode on this run: it must say which build was replaced, and by which.
    again = sandbox.playbook("demo.yml", "-e", "demo_registry_persistence=false", "-e", "demo_interactive=true")
    assert "Remove the build found, its image is no longer in the hub" in again.output
    [second] = _builds_and_revisions(sandbox)[0]
    assert second != first
    image = kubernetes.client.CustomObjectsApi(sandbox.api).get_namespaced_custom_object(
        "serving.knative.dev", "v1", NAMESPACE, "services", "hello"
    )["spec"]["template"]["spec"]["containers"][0]["image"]
    assert _shown(again.output, "Say whether the build was reused") == (
        f"the image of TaskRun {first} had left the hub: TaskRun {second} built it again, image {image}"
    )
    assert _answer(sandbox) == "Hello World!\n"
    # And now that the image is back, the next run reuses the new build.
    assert sandbox.playbook("demo.yml", "-e", "demo_registry_persistence=false").changed == 0
    assert _builds_and_revisions(sandbox)[0] == [second]


def test_a_hub_with_authentication_and_a_dockerconfigjson_secret(sandbox: Sandbox) -> None:
    # Issue 8 item 6: a kubernetes.io/dockerconfigjson Secret (what `kubectl create secret
    # docker-registry` makes) keeps its config under .dockerconfigjson; kaniko reads config.json.
    import base64

    import bcrypt

    user, password = "builder", "s3cret-for-the-hub"
    core = kubernetes.client.CoreV1Api(sandbox.api)
    entry = f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()}\n"
    core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": "hub-auth"}, "stringData": {"htpasswd": entry}})
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    config = json.dumps({"auths": {"hub.default.svc.cluster.local": {"auth": token}}})
    core.create_namespaced_secret(
        NAMESPACE,
        {
            "metadata": {"name": "hub-push"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": config},
        },
    )
    sandbox.playbook("sandbox-prepare.yml")
    extra = {
        "registry_auth_secret": "hub-auth",
        "build_docker_config_secret": "hub-push",
        "app_image_pull_secrets": ["hub-push"],
    }
    run = sandbox.playbook("demo.yml", "-e", json.dumps(extra))
    assert password not in run.output
    [taskrun] = _builds_and_revisions(sandbox)[0]
    spec = kubernetes.client.CustomObjectsApi(sandbox.api).get_namespaced_custom_object(
        "tekton.dev", "v1", NAMESPACE, "taskruns", taskrun
    )["spec"]
    binding = next(w for w in spec["workspaces"] if w["name"] == "dockerconfig")
    assert binding["secret"]["items"] == [{"key": ".dockerconfigjson", "path": "config.json"}]
    assert _answer(sandbox) == "Hello World!\n"


OWN_DEPLOY = """
- name: Deploy an app of one's own with the three roles
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.import_role:
        name: knlab.serverless.registry
      vars:
        registry_name: team-hub
        registry_persistence: true
    - ansible.builtin.import_role:
        name: knlab.serverless.build
      vars:
        build_name: team-app
        build_source_dir: {source}
    - ansible.builtin.import_role:
        name: knlab.serverless.app
      vars:
        app_name: team-app
        app_ingress_address: "{{{{ lookup('ansible.builtin.env', 'DEMO_INGRESS_ADDRESS') }}}}"
"""

OWN_REMOVE = """
- name: Remove it through the roles' absent entry points
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.include_role:
        name: knlab.serverless.app
        tasks_from: absent
      vars:
        app_name: team-app
    - ansible.builtin.include_role:
        name: knlab.serverless.build
        tasks_from: absent
      vars:
        build_name: team-app
    - ansible.builtin.include_role:
        name: knlab.serverless.registry
        tasks_from: absent
      vars:
        registry_name: team-hub
"""


def test_an_own_app_removed_through_the_roles_leaves_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    assert sandbox.playbook("sandbox-prepare.yml").changed == 1
    deploy, remove = tmp_path / "deploy.yml", tmp_path / "remove.yml"
    deploy.write_text(OWN_DEPLOY.format(source=SOURCE))
    remove.write_text(OWN_REMOVE)
    assert sandbox.playbook(str(deploy)).changed > 0
    deployed = _demo_objects(sandbox)
    assert deployed["services"] == ["team-app", "team-hub"]
    assert deployed["pvcs"] and deployed["taskruns"] and deployed["configmaps"], deployed
    assert sandbox.playbook(str(remove)).changed > 0
    assert _demo_objects(sandbox) == {}
    assert sandbox.playbook(str(remove)).changed == 0


# Columns whose value is an age, which moves between the playbook's view and kubectl's; and the one
# column where the sandbox differs from Kubernetes (it prints <none> for an unset class, Kubernetes
# <unset>).
MOVING_COLUMNS = {"AGE", "STARTTIME", "COMPLETIONTIME", "VOLUMEATTRIBUTESCLASS"}


def _shown(output: str, task: str) -> list[str] | str:
    """The msg of a debug task, as the default callback printed it (JSON)."""
    found = re.search(rf"^TASK \[{re.escape(task)}\] \**\nok: \[localhost\] => (\{{\n.*?\n\}})$", output, re.M | re.S)
    assert found, f"no output of the task {task!r} in:\n{output[-3000:]}"
    return json.loads(found.group(1))["msg"]


def _views(lines: list[str]) -> dict[str, list[str]]:
    """`$ kubectl ...` lines of a view, each with the table printed under it."""
    views, command = {}, None
    for line in lines:
        if line.startswith("$ kubectl "):
            command = line[2:]
            views[command] = []
        elif not line:
            command = None
        elif command:
            views[command].append(line)
    return views


def _rows(table: list[str]) -> list[dict[str, str]]:
    """A kubectl table as dicts, cut at the header's column starts (cells may be empty)."""
    header = table[0]
    starts = [m.start() for m in re.finditer(r"\S+(?: \S+)*", header)]
    names = [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    return [
        {name: line[a:b].strip() for name, a, b in zip(names, starts, [*starts[1:], None], strict=True)}
        for line in table[1:]
    ]


def _kubectl(sandbox: Sandbox, command: str) -> list[str]:
    return sandbox.kubectl(*shlex.split(command)[1:], timeout=30).splitlines()


def _assert_views_are_kubectls(sandbox: Sandbox, views: dict[str, list[str]]) -> None:
    for command, table in views.items():
        expected = [
            {k: v for k, v in row.items() if k not in MOVING_COLUMNS} for row in _rows(_kubectl(sandbox, command))
        ]
        shown = [{k: v for k, v in row.items() if k not in MOVING_COLUMNS} for row in _rows(table)]
        assert expected, f"kubectl printed nothing for {command}"
        assert shown == expected, f"{command}: the view differs from kubectl's output"


@pytest.mark.skipif(not shutil.which("kubectl"), reason="the views are compared with kubectl's own output")
def test_presenter_mode_names_the_build_it_reuses_and_shows_the_cluster(sandbox: Sandbox) -> None:
    # Issue 9 item 6. No terminal: the pauses do not wait (ansible says so), everything else shows.
    presenter = ("-e", "demo_interactive=true")
    sandbox.playbook("sandbox-prepare.yml")
    check = sandbox.playbook("demo.yml", "--check", *presenter)
    assert _shown(check.output, "Say whether the build was reused") == (
        "source new or changed: a TaskRun would be created (check mode builds nothing)"
    )

    first = sandbox.playbook("demo.yml", *presenter)
    assert "Not waiting for response to prompt as stdin is not interactive" in first.output
    [taskrun] = _builds_and_revisions(sandbox)[0]
    results = kubernetes.client.CustomObjectsApi(sandbox.api).get_namespaced_custom_object(
        "tekton.dev", "v1", NAMESPACE, "taskruns", taskrun
    )["status"]["results"]
    digest = next(r["value"] for r in results if r["name"] == "IMAGE_DIGEST").strip()
    image = f"hub.default.svc.cluster.local/hello@{digest}"
    assert _shown(first.output, "Say whether the build was reused") == (
        f"source new or changed: TaskRun {taskrun} built image {image}"
    )

    again = sandbox.playbook("demo.yml", *presenter)
    assert again.changed == 0
    assert _shown(again.output, "Say whether the build was reused") == (
        f"source unchanged: reusing TaskRun {taskrun}, image {image}"
    )
    assert _builds_and_revisions(sandbox)[0] == [taskrun]
    app = kubernetes.client.CustomObjectsApi(sandbox.api).get_namespaced_custom_object(
        "serving.knative.dev", "v1", NAMESPACE, "services", "hello"
    )
    assert app["spec"]["template"]["spec"]["containers"][0]["image"] == image

    hub = _shown(again.output, "Show the hub, and where builds push and nodes pull")
    build = _shown(again.output, "Show the build's TaskRuns")
    app_view = _shown(again.output, "Show the app and its revisions")
    views = _views(hub) | _views(build) | _views(app_view)
    assert sorted(views) == [
        "kubectl -n default get ksvc hello",
        "kubectl -n default get ksvc hub",
        "kubectl -n default get pvc hub-data",
        "kubectl -n default get revisions -l serving.knative.dev/service=hello",
        "kubectl -n default get taskruns -l serverless.knlab.io/build=hello -L serverless.knlab.io/source",
    ]
    assert [row["NAME"] for row in _rows(views[sorted(views)[4]])] == [taskrun]
    _assert_views_are_kubectls(sandbox, views)
    # Push and pull host are the same on the sandbox, and the view says why and when they are not.
    assert "Builds push to hub.default.svc.cluster.local: kaniko runs in a pod, and pods resolve cluster DNS." in hub
    assert any(line.startswith("Nodes pull the app from hub.default.svc.cluster.local too:") for line in hub)
