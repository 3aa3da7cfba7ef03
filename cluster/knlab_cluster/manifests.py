"""Install manifests from the modules' own config/ directories, as `ko resolve` makes releases.

- Knative Serving: serving-crds.yaml = config/core/300-resources/ + 300-imagecache.yaml;
  serving-core.yaml = all of config/core/ (hack/generate-yamls.sh).
- Tekton Pipelines: everything under config/ (tekton/publish.yaml), less the remote resolvers and
  the events controller, which the collection does not use (and which would need two more images).
- local-path-provisioner: deploy/local-path-storage.yaml.

`ko://<import path>` becomes the image built here, pinned by digest; Tekton's `-shell-image`
(pinned upstream by a digest that cannot exist here) gets the digest of the busybox built here.
Files that are symlinks into vendor/ upstream are missing from module zips; they come from the
modules serving's go.mod requires, which hold the same files.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from .components import component, images, module_dir, module_version
from .settings import Paths

KO_REF = re.compile(r"ko://([A-Za-z0-9_./-]+)")
SHELL_IMAGE = re.compile(r"cgr\.dev/chainguard/busybox@sha256:[0-9a-f]{64}")
LOCAL_PATH_DIR = "/var/lib/local-path-provisioner"

# config/core files that are symlinks upstream: (module, path in that module).
KNATIVE_VENDORED = {
    "300-imagecache.yaml": ("knative.dev/caching", "config/image.yaml"),
    "300-resources/certificate.yaml": ("knative.dev/networking", "config/certificate.yaml"),
    "300-resources/domain-claim.yaml": ("knative.dev/networking", "config/domain-claim.yaml"),
    "300-resources/ingress.yaml": ("knative.dev/networking", "config/ingress.yaml"),
    "300-resources/serverlessservice.yaml": ("knative.dev/networking", "config/serverlessservice.yaml"),
    "configmaps/network.yaml": ("knative.dev/networking", "config/config-network.yaml"),
}
TEKTON_SKIPPED = ("resolvers/", "events.yaml")


def _yaml_files(root: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """YAML files under root, relative, in the order ko reads them (lexical, recursive)."""
    found = []
    for path in sorted(root.rglob("*.yaml")):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in rel.split("/")) or path.name == "kustomization.yaml":
            continue
        if any(rel == s or rel.startswith(s) for s in skip):
            continue
        found.append(rel)
    return found


def _resolve(text: str, by_ko_path: dict[str, str], source: str) -> str:
    def substitute(match: re.Match) -> str:
        path = match.group(1)
        if path not in by_ko_path:
            raise SystemExit(f"{source} refers to ko://{path}, which this build does not make")
        return by_ko_path[path]

    return KO_REF.sub(substitute, text)


def _join(documents: list[tuple[str, str]]) -> str:
    parts = []
    for source, text in documents:
        parts.append(f"# Source: {source}\n{text.strip()}\n")
    return "---\n".join(parts)


def knative_manifests(refs: dict[str, str], by_ko_path: dict[str, str]) -> dict[str, str]:
    knative = component("knative")
    serving = module_dir(knative.module, knative.version, knative.directory)
    go_mod = knative.directory / "go.mod"
    vendored_dirs = {
        module: module_dir(module, module_version(go_mod, module), knative.directory)
        for module in {m for m, _ in KNATIVE_VENDORED.values()}
    }
    core = serving / "config" / "core"
    rels = sorted(set(_yaml_files(core)) | set(KNATIVE_VENDORED))
    release = knative.version if knative.version != "v0.50.0" else "v1.23.0"

    def document(rel: str) -> tuple[str, str]:
        if rel in KNATIVE_VENDORED and not (core / rel).exists():
            module, path = KNATIVE_VENDORED[rel]
            source = vendored_dirs[module] / path
        else:
            source = core / rel
        text = _resolve(source.read_text(), by_ko_path, str(source))
        text = text.replace("app.kubernetes.io/version: devel", f'app.kubernetes.io/version: "{release.lstrip("v")}"')
        return f"knative.dev/serving@{knative.version}/config/core/{rel}", text

    docs = [document(rel) for rel in rels]
    crds = [
        d for rel, d in zip(rels, docs, strict=True) if rel.startswith("300-resources/") or rel == "300-imagecache.yaml"
    ]
    return {"serving-crds.yaml": _join(crds), "serving-core.yaml": _join(docs)}


def tekton_manifest(refs: dict[str, str], by_ko_path: dict[str, str]) -> str:
    tekton = component("tekton")
    config = module_dir(tekton.module, tekton.version, tekton.directory) / "config"
    docs = []
    for rel in _yaml_files(config, TEKTON_SKIPPED):
        source = config / rel
        text = _resolve(source.read_text(), by_ko_path, str(source))
        text = SHELL_IMAGE.sub(refs["cgr.dev/chainguard/busybox"], text)
        text = text.replace('"devel"', f'"{tekton.version}"')
        docs.append((f"{tekton.module}@{tekton.version}/config/{rel}", text))
    return _join(docs)


def local_path_manifest() -> str:
    lpp = component("local-path")
    source = module_dir(lpp.module, lpp.version, lpp.directory) / "deploy" / "local-path-storage.yaml"
    # Volumes go under /var/lib, which the cluster keeps in its own state directory.
    text = source.read_text().replace("/opt/local-path-provisioner", LOCAL_PATH_DIR)
    return _join([(f"{lpp.module}@{lpp.version}/deploy/local-path-storage.yaml", text)])


def generate_manifests(paths: Paths, refs: dict[str, str]) -> dict[str, str]:
    by_ko_path = {image.ko_path: refs[image.name] for image in images() if image.ko_path}
    contents = {
        **knative_manifests(refs, by_ko_path),
        "tekton.yaml": tekton_manifest(refs, by_ko_path),
        "local-path.yaml": local_path_manifest(),
    }
    key = json.dumps(sorted(contents.items()))
    out = paths.cache / "manifests" / hashlib.sha256(key.encode()).hexdigest()[:16]
    out.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        (out / name).write_text(text)
    return {name: str(out / name) for name in contents}
