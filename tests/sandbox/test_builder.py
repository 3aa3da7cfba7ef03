"""The kaniko stand-in: Dockerfile parsing, image building, and pushes into a real docker-registry."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest
from ansible_collections.knlab.serverless.tests.unit.registry_server import start_registry
from knlab_sandbox import builder
from knlab_sandbox.builder import BuildError, Environment, Words, parse_dockerfile, parse_reference

ACCEPT = {"Accept": builder.DOCKER_MANIFEST}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    with start_registry(tmp_path_factory.mktemp("registry")) as server:
        yield server


def write_context(root: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(dockerfile)
    for name, content in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


async def run(args: list[str], cwd: Path, resolve=None, env=None) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = await builder.execute(args, lines.append, Environment(cwd=str(cwd), resolve=resolve, env=env or {}))
    return code, lines


def pulled(registry, repository: str, tag: str) -> tuple[dict, dict, list[dict[str, bytes]]]:
    """Manifest, config and each layer's files, as the registry serves them."""
    response = registry.request("GET", f"/v2/{repository}/manifests/{tag}", headers=ACCEPT)
    assert response.status == 200, response.body
    manifest = response.json()
    config = registry.request("GET", f"/v2/{repository}/blobs/{manifest['config']['digest']}").json()
    layers = []
    for layer in manifest["layers"]:
        blob = registry.request("GET", f"/v2/{repository}/blobs/{layer['digest']}").body
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
            layers.append({m.name: (tar.extractfile(m).read() if m.isfile() else m) for m in tar.getmembers()})
    return manifest, config, layers


# -- parsing ---------------------------------------------------------------------------------------


def test_parse_handles_continuations_comments_and_directives():
    text = '# syntax=docker/dockerfile:1\n# escape=`\nFROM scratch\nENV A=1 `\n  # gone\n  B=2\n\n# note\nCMD ["x"]\n'
    instructions, escape = parse_dockerfile(text)
    assert escape == "`"
    assert [(i.keyword, i.rest, i.line) for i in instructions] == [
        ("FROM", "scratch", 3),
        ("ENV", "A=1 B=2", 4),
        ("CMD", '["x"]', 9),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM scratch\nFOO bar\n", "line 2: unknown instruction: FOO"),
        ("COPY a b\n", "no build stage in current context"),
        ("# just a comment\n", "file with no instructions"),
    ],
)
def test_parse_errors(text, message):
    with pytest.raises(BuildError, match=message):
        parse_dockerfile(text)


def test_words_expand_and_unquote():
    words = Words("\\", {"NAME": "app", "EMPTY": ""})
    assert words.split("a=$NAME b=\"${NAME} x\" c='$NAME' d=${MISSING:-dflt} e=${EMPTY:+set} f=\\$NAME") == [
        "a=app",
        "b=app x",
        "c=$NAME",
        "d=dflt",
        "e=",
        "f=$NAME",
    ]
    with pytest.raises(BuildError, match="MISSING: required"):
        words.word("${MISSING:?required}")


def test_references():
    assert str(parse_reference("python:3.12")) == "index.docker.io/library/python:3.12"
    ref = parse_reference("hub.default.svc.cluster.local/demo/hello")
    assert (ref.registry, ref.repository, ref.tag) == ("hub.default.svc.cluster.local", "demo/hello", "latest")
    with pytest.raises(ValueError, match="repository can only contain"):
        parse_reference("localhost:5000/Hello")


# -- building and pushing --------------------------------------------------------------------------

APP_DOCKERFILE = """\
ARG BASE=python:3.12-slim
FROM ${BASE}
ARG GREETING=hello
ENV PORT=8080 GREETING="${GREETING} world"
WORKDIR /app
COPY app.py ./
COPY static/ static/
COPY --chown=1000:1000 --chmod=0755 run.sh /usr/local/bin/
EXPOSE ${PORT}
LABEL org.example.title="hello app"
USER 1000:1000
ENTRYPOINT ["python"]
CMD ["app.py"]
"""


async def test_build_and_push_to_a_real_registry(registry, tmp_path):
    context = write_context(
        tmp_path / "ctx",
        APP_DOCKERFILE,
        {
            "app.py": "print('hi')\n",
            "static/index.html": "<p>hi</p>",
            "static/debug.log": "secret",
            "run.sh": "#!/bin/sh\n",
            ".dockerignore": "**/*.log\n",
        },
    )
    destination = f"{registry.netloc}/demo/hello:v1"
    code, log = await run(
        [
            "--context=dir://" + str(context),
            "--destination",
            destination,
            "--digest-file=out/digest",
            "--image-name-with-digest-file=out/names",
            "--image-name-tag-with-digest-file=out/tags",
            "--build-arg=GREETING=hi",
            "--label=org.example.commit=abc",
        ],
        tmp_path,
    )
    assert code == 0, log
    digest = (tmp_path / "out/digest").read_text()
    assert digest.startswith("sha256:") and not digest.endswith("\n")
    assert (tmp_path / "out/names").read_text() == f"{registry.netloc}/demo/hello@{digest}\n"
    assert (tmp_path / "out/tags").read_text() == f"{destination}@{digest}\n"
    assert f"INFO[0000] Pushed {registry.netloc}/demo/hello@{digest}" in log
    assert any("layers are not included" in line for line in log)

    head = registry.request("HEAD", "/v2/demo/hello/manifests/v1", headers=ACCEPT)
    assert head.headers["docker-content-digest"] == digest
    assert head.headers["content-type"] == builder.DOCKER_MANIFEST
    assert registry.request("GET", "/v2/demo/hello/tags/list").json()["tags"] == ["v1"]

    manifest, config, layers = pulled(registry, "demo/hello", "v1")
    settings = config["config"]
    assert settings["Env"] == ["PORT=8080", "GREETING=hi world"]
    assert settings["WorkingDir"] == "/app"
    assert settings["ExposedPorts"] == {"8080/tcp": {}}
    assert settings["Entrypoint"] == ["python"] and settings["Cmd"] == ["app.py"]
    assert settings["User"] == "1000:1000"
    assert settings["Labels"]["org.example.title"] == "hello app"
    assert settings["Labels"]["org.example.commit"] == "abc"
    assert settings["Labels"]["org.opencontainers.image.base.name"] == "index.docker.io/library/python:3.12-slim"
    assert config["history"][0]["created_by"] == "FROM ${BASE}"
    assert "not included" in config["history"][0]["comment"]
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"]) == 4  # WORKDIR + 3 COPY
    workdir, app, static, script = layers
    assert "app" in workdir
    assert app["app/app.py"] == b"print('hi')\n"
    assert set(static) == {"app", "app/static", "app/static/index.html"}  # the .log is ignored
    run_sh = script["usr/local/bin/run.sh"]
    assert run_sh == b"#!/bin/sh\n"


async def test_chown_and_chmod_reach_the_layer(registry, tmp_path):
    context = write_context(
        tmp_path / "ctx", "FROM scratch\nCOPY --chown=1000:2000 --chmod=0750 tool /bin/tool\n", {"tool": "x"}
    )
    code, log = await run(["-c", str(context), "-d", f"{registry.netloc}/demo/owned:1"], tmp_path)
    assert code == 0, log
    manifest = registry.request("GET", "/v2/demo/owned/manifests/1", headers=ACCEPT).json()
    blob = registry.request("GET", f"/v2/demo/owned/blobs/{manifest['layers'][0]['digest']}").body
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        tool = tar.getmember("bin/tool")
    assert (tool.uid, tool.gid, tool.mode) == (1000, 2000, 0o750)


async def test_reproducible_builds_are_identical_and_skip_existing_blobs(registry, tmp_path):
    context = write_context(
        tmp_path / "ctx", "FROM scratch\nCOPY . /srv/\nCMD python /srv/app.py\n", {"app.py": "print(1)\n"}
    )
    args = ["--context", str(context), "--reproducible", "--digest-file", "digest", "--verbosity=debug"]
    code, first = await run([*args, f"--destination={registry.netloc}/demo/repro:a"], tmp_path)
    assert code == 0, first
    digest_a = (tmp_path / "digest").read_text()
    code, second = await run([*args, f"--destination={registry.netloc}/demo/repro:b"], tmp_path)
    assert code == 0, second
    assert (tmp_path / "digest").read_text() == digest_a
    assert sum("Existing blob" in line for line in second) == 1  # the one layer; the config is the same too
    assert not any("Pushed blob" in line for line in second)
    _, config, layers = pulled(registry, "demo/repro", "b")
    assert config["created"] == "1970-01-01T00:00:00Z"
    assert config["config"]["Cmd"] == ["/bin/sh", "-c", "python /srv/app.py"]
    assert "srv/Dockerfile" in layers[0] and "srv/app.py" in layers[0]


async def test_add_extracts_local_archives(registry, tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    with tarfile.open(context / "bundle.tar.gz", "w:gz") as tar:
        data = b"bundled\n"
        info = tarfile.TarInfo("pkg/data.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    write_context(context, "FROM scratch\nADD bundle.tar.gz /opt/\n")
    code, log = await run(["--context", str(context), "--destination", f"{registry.netloc}/demo/add:1"], tmp_path)
    assert code == 0, log
    _, _, layers = pulled(registry, "demo/add", "1")
    assert layers[0]["opt/pkg/data.txt"] == b"bundled\n"


async def test_run_fails_with_exit_1_and_nothing_is_pushed(registry, tmp_path):
    context = write_context(
        tmp_path / "ctx", "FROM python:3.12\nCOPY app.py /app/\nRUN pip install flask\n", {"app.py": ""}
    )
    code, log = await run(["--context", str(context), "--destination", f"{registry.netloc}/demo/run:1"], tmp_path)
    assert code == 1
    assert "INFO[0000] RUN pip install flask" in log
    assert log[-1].startswith("error building image: ") and "cannot execute commands" in log[-1]
    assert registry.request("GET", "/v2/demo/run/tags/list").status == 404


@pytest.mark.parametrize(
    ("dockerfile", "files", "message"),
    [
        ("FROM scratch\nCOPY a b /dest\n", {"a": "", "b": ""}, "must be a directory and end with a /"),
        ("FROM scratch\nCOPY ../etc/passwd /x\n", {}, "forbidden path outside the build context"),
        ("FROM scratch\nCOPY missing.txt /x\n", {}, "file not found in build context"),
        ("FROM scratch\nCOPY *.py /x/\n", {}, "no source files were specified"),
        ("FROM scratch\nCOPY --from=builder /a /b\n", {}, "--from is not supported"),
        ("FROM scratch\nADD https://example.com/x /x\n", {}, "has no network"),
        ("FROM a AS one\nFROM scratch\n", {}, "multi-stage builds are not supported"),
        ("FROM scratch\nCOPY --chown=app a /a\n", {"a": ""}, "use numeric ids"),
    ],
)
async def test_what_the_sandbox_cannot_build_fails_clearly(tmp_path, dockerfile, files, message):
    context = write_context(tmp_path / "ctx", dockerfile, files)
    code, log = await run(["--context", str(context), "--no-push"], tmp_path)
    assert code == 1
    assert log[-1].startswith("error building image: ") and message in log[-1], log


async def test_command_line_like_kaniko(tmp_path):
    context = write_context(tmp_path / "ctx", "FROM scratch\n")
    code, log = await run(["--context", str(context), "--no-push", "--bogus"], tmp_path)
    assert (code, log) == (1, ["Error: unknown flag: --bogus"])
    code, log = await run(["--context", str(context)], tmp_path)
    assert (code, log) == (1, ["Error: you must provide --destination, or use --no-push"])
    code, log = await run(["--context", str(context), "--no-push", "--snapshot-mode=redo", "--cache-ttl=6h"], tmp_path)
    assert code == 0
    assert "INFO[0000] Flag --snapshot-mode is not used by the knlab sandbox builder; ignored" in log
    code, log = await run(["--context", "tar://ctx.tar.gz", "--no-push"], tmp_path)
    assert code == 1 and "only local directory contexts" in log[-1]


async def test_hub_hosts_resolve_through_the_gateway(registry, tmp_path):
    context = write_context(tmp_path / "ctx", "FROM scratch\nCOPY f /f\n", {"f": "1"})
    hubs = {
        "hub.default.svc.cluster.local": ("127.0.0.1", registry.port),
        "hub.default.127.0.0.1.sslip.io": ("127.0.0.1", registry.port),
    }

    def resolve(host: str):
        return hubs.get(host.removesuffix(":80"))

    base = ["--context", str(context), "--digest-file", "digest"]
    # go-containerregistry v0.21 (kaniko v1.27.x) speaks HTTPS to *.local names: without
    # --insecure-registry the push fails, as on a real cluster (issue 8 item 2).
    cluster_local = "hub.default.svc.cluster.local"
    code, log = await run([*base, "-d", f"{cluster_local}/demo/via-hub:1"], tmp_path, resolve)
    assert code == 1 and f"--insecure-registry={cluster_local}" in log[-1]
    code, log = await run(
        [*base, "-d", f"{cluster_local}/demo/via-hub:1", f"--insecure-registry={cluster_local}"], tmp_path, resolve
    )
    assert code == 0, log
    assert registry.request("HEAD", "/v2/demo/via-hub/manifests/1", headers=ACCEPT).status == 200

    # A name containing 127.0.0.1 is plain HTTP upstream (an unanchored match), sslip.io names too.
    code, log = await run([*base, "-d", "hub.default.127.0.0.1.sslip.io/demo/via-hub:2"], tmp_path, resolve)
    assert code == 0, log

    code, log = await run([*base, "-d", "nowhere.example.com/demo/x:1"], tmp_path, resolve)
    assert code == 1 and log[-1].startswith("error pushing image: ") and "no such host" in log[-1]


async def test_a_configmap_volume_context_is_read_through_its_data_directory(registry, tmp_path):
    # The kubelet's layout (sandbox/knlab_sandbox/volumes.py): "context" is a symlink into ..data.
    # Through the symlink, COPY . copies the link itself and wildcards match nothing, as kaniko
    # does; through ..data/context (what the build role's Task uses) the files arrive.
    from knlab_sandbox.volumes import write_atomic

    dockerfile = b"FROM scratch\nCOPY . /app/\nCOPY *.py /wild/\n"
    volume = tmp_path / "source"
    write_atomic(volume, {"context/Dockerfile": dockerfile, "context/app.py": b"print(1)\n", "context/lib/x.txt": b"x"})
    assert (volume / "context").is_symlink() and (volume / "..data").is_symlink()
    assert not (volume / "..data" / "context").is_symlink()

    code, log = await run(["-c", f"dir://{volume}/context", "-d", f"{registry.netloc}/demo/linked:1"], tmp_path)
    assert code == 1 and any("no source files were specified" in line for line in log), log

    code, log = await run(["-c", f"dir://{volume}/..data/context", "-d", f"{registry.netloc}/demo/ctx:1"], tmp_path)
    assert code == 0, log
    _, _, layers = pulled(registry, "demo/ctx", "1")
    files = {name for layer in layers for name, member in layer.items() if isinstance(member, bytes)}
    assert {"app/app.py", "app/Dockerfile", "app/lib/x.txt", "wild/app.py"} <= files, files


async def test_the_digest_files_are_written_before_the_push(tmp_path):
    # kaniko's DoPush writes them first (issue 8 item 6): a push that fails leaves them behind, and
    # with them the step's IMAGE_DIGEST and IMAGE_URL results.
    context = write_context(tmp_path / "ctx", "FROM scratch\nCOPY f /f\n", {"f": "1"})
    args = ["--context", str(context), "-d", "nowhere.example.com/demo/x:1", "--digest-file", "digest"]
    code, log = await run([*args, "--image-name-with-digest-file", "url"], tmp_path, lambda host: None)
    assert code == 1 and log[-1].startswith("error pushing image: ")
    digest = (tmp_path / "digest").read_text()
    assert digest.startswith("sha256:") and (tmp_path / "url").read_text() == f"nowhere.example.com/demo/x@{digest}\n"
