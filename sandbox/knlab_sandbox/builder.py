"""The kaniko stand-in: build an image from a Dockerfile and push it over the registry HTTP API v2.

A Tekton step whose image is kaniko's executor runs `execute` with the step's args. What it does
is real: it reads the build context, applies the Dockerfile, writes tar+gzip layers of the copied
files, an image config and a Docker v2 (schema 2) manifest — what kaniko pushes for a Docker base —
and pushes them to every ``--destination`` with the chunked upload flow (FACTS §4.4). Output files
(``--digest-file`` and friends) and the log follow kaniko's.

What it cannot do, it says and fails with exit code 1, never pretending:

- The sandbox has no network, so a ``FROM`` base image is not pulled. The base is recorded in the
  image (labels ``org.opencontainers.image.base.name``/``.digest`` and the first history entry)
  and the log says its layers are not included. ``FROM scratch`` needs nothing.
- ``RUN`` needs a container runtime: the build fails at that instruction, saying why. So do
  multi-stage builds, heredocs, ``ADD`` of URLs and contexts other than a local directory.

Paths in the args are container paths. The caller maps them to host paths (``path_of``), resolves
registry hosts (``resolve``: a hub's Knative host through the gateway, see docs/INTERNALS.md) and
receives the log lines (``write``). From a shell, ``python -m knlab_sandbox.builder <kaniko args>``
builds with host paths and pushes only to registries on loopback.
"""

from __future__ import annotations

import asyncio
import datetime
import gzip
import io
import json
import os
import platform
import re
import sys
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlencode

import aiohttp

from .registry_client import (
    DIGEST_PATTERN,
    DOCKER_MANIFEST,
    REPOSITORY_COMPONENT,
    TAG_PATTERN,
    Registry,
    RegistryConnection,
    Resolver,
    basic_authorization,
    docker_config_credentials,
    registry_address,
    registry_errors,
    sha256_digest,
)

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

DEFAULT_REGISTRY = "index.docker.io"
DEFAULT_SHELL = ("/bin/sh", "-c")
REPRODUCIBLE_TIME = "1970-01-01T00:00:00Z"
KANIKO_AUTHOR = "kaniko"
BASE_NAME_LABEL = "org.opencontainers.image.base.name"
BASE_DIGEST_LABEL = "org.opencontainers.image.base.digest"
BASE_LAYERS_LABEL = "io.knlab.sandbox.base-layers"
REQUEST_TIMEOUT = 60.0

# Instructions BuildKit knows; the ones the sandbox cannot carry out fail when reached.
KNOWN_INSTRUCTIONS = frozenset(
    {
        "ADD",
        "ARG",
        "CMD",
        "COPY",
        "ENTRYPOINT",
        "ENV",
        "EXPOSE",
        "FROM",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    }
)
LOG_LEVELS = ("panic", "fatal", "error", "warn", "info", "debug", "trace")


class UsageError(Exception):
    """Bad command line: cobra prints ``Error: <msg>`` and exits 1."""


class BuildError(Exception):
    """The build cannot go on; kaniko prints ``error building image: <msg>`` and exits 1."""


class PushError(Exception):
    """A destination refused the image; kaniko prints ``error pushing image: <msg>`` and exits 1."""


# --------------------------------------------------------------------------------------------------
# Command line (pflag semantics: --name=value, --name value, -c value, booleans without a value)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    kind: str  # "string" | "bool" | "list" | "int" | "duration"
    short: str = ""
    used: bool = False  # False: a real kaniko flag the sandbox accepts and ignores (logged)


FLAGS: dict[str, Flag] = {
    "context": Flag("string", "c", used=True),
    "context-sub-path": Flag("string", used=True),
    "dockerfile": Flag("string", "f", used=True),
    "destination": Flag("list", "d", used=True),
    "no-push": Flag("bool", used=True),
    "insecure": Flag("bool", used=True),
    "insecure-registry": Flag("list", used=True),
    "skip-tls-verify": Flag("bool", used=True),
    "skip-tls-verify-registry": Flag("list", used=True),
    "build-arg": Flag("list", used=True),
    "label": Flag("list", used=True),
    "reproducible": Flag("bool", used=True),
    "verbosity": Flag("string", "v", used=True),
    "log-format": Flag("string", used=True),
    "log-timestamp": Flag("bool", used=True),
    "digest-file": Flag("string", used=True),
    "image-name-with-digest-file": Flag("string", used=True),
    "image-name-tag-with-digest-file": Flag("string", used=True),
    "target": Flag("string", used=True),
    "custom-platform": Flag("string", used=True),
    "customPlatform": Flag("string", used=True),
    "cache": Flag("bool", used=True),
    "cache-repo": Flag("string", used=True),
    "force": Flag("bool", used=True),
    "push-retry": Flag("int", used=True),
    # Real flags with no effect here: caching, snapshot tuning, other outputs and credentials.
    "bucket": Flag("string", "b"),
    "snapshot-mode": Flag("string"),
    "snapshotMode": Flag("string"),
    "insecure-pull": Flag("bool"),
    "skip-tls-verify-pull": Flag("bool"),
    "push-ignore-immutable-tag-errors": Flag("bool"),
    "image-fs-extract-retry": Flag("int"),
    "image-download-retry": Flag("int"),
    "kaniko-dir": Flag("string"),
    "tar-path": Flag("string"),
    "tarPath": Flag("string"),
    "single-snapshot": Flag("bool"),
    "no-push-cache": Flag("bool"),
    "cache-dir": Flag("string"),
    "oci-layout-path": Flag("string"),
    "compression": Flag("string"),
    "compression-level": Flag("int"),
    "compressed-caching": Flag("bool"),
    "cleanup": Flag("bool"),
    "cache-ttl": Flag("duration"),
    "registry-certificate": Flag("list"),
    "registry-client-cert": Flag("list"),
    "registry-map": Flag("list"),
    "registry-mirror": Flag("list"),
    "skip-default-registry-fallback": Flag("bool"),
    "ignore-var-run": Flag("bool"),
    "whitelist-var-run": Flag("bool"),
    "skip-unused-stages": Flag("bool"),
    "use-new-run": Flag("bool"),
    "git": Flag("string"),
    "cache-copy-layers": Flag("bool"),
    "cache-run-layers": Flag("bool"),
    "ignore-path": Flag("list"),
    "skip-push-permission-check": Flag("bool"),
    "annotation": Flag("list"),
    "preserve-context": Flag("bool"),
    "materialize": Flag("bool"),
    "credential-helpers": Flag("list"),
    "force-build-metadata": Flag("bool"),
}
SHORT_FLAGS = {flag.short: name for name, flag in FLAGS.items() if flag.short}
BOOL_VALUES = {"1": True, "t": True, "true": True, "True": True, "TRUE": True}
BOOL_VALUES |= {"0": False, "f": False, "false": False, "False": False, "FALSE": False}


@dataclass
class Options:
    values: dict[str, Any] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    positional: list[str] = field(default_factory=list)

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def many(self, name: str) -> list[str]:
        return list(self.values.get(name, []))


def parse_args(argv: Sequence[str]) -> Options:
    """Parse kaniko's command line the way cobra/pflag does; raises UsageError."""
    options = Options()
    args = list(argv)
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            options.positional.extend(args[index:])
            break
        if arg.startswith("--"):
            name, has_value, value = arg[2:].partition("=")
            flag = FLAGS.get(name)
            if flag is None:
                raise UsageError(f"unknown flag: --{name}")
        elif arg.startswith("-") and len(arg) > 1:
            short = arg[1]
            name = SHORT_FLAGS.get(short, "")
            if not name:
                raise UsageError(f"unknown shorthand flag: '{short}' in {arg}")
            flag = FLAGS[name]
            rest = arg[2:]
            has_value, value = bool(rest), rest[1:] if rest.startswith("=") else rest
        else:
            options.positional.append(arg)
            continue
        if flag.kind == "bool":
            if has_value and value not in BOOL_VALUES:
                raise UsageError(
                    f'invalid argument "{value}" for "--{name}" flag: '
                    f'strconv.ParseBool: parsing "{value}": invalid syntax'
                )
            parsed: Any = BOOL_VALUES[value] if has_value else True
        else:
            if not has_value:
                if index >= len(args):
                    raise UsageError(f"flag needs an argument: --{name}")
                value = args[index]
                index += 1
            parsed = _flag_value(name, flag, value)
        if flag.kind == "list":
            options.values.setdefault(name, []).append(parsed)
        else:
            options.values[name] = parsed
        if not flag.used and name not in options.ignored:
            options.ignored.append(name)
    return options


def _flag_value(name: str, flag: Flag, value: str) -> Any:
    if flag.kind == "int":
        try:
            return int(value)
        except ValueError:
            raise UsageError(
                f'invalid argument "{value}" for "--{name}" flag: strconv.ParseInt: parsing "{value}": invalid syntax'
            ) from None
    if flag.kind == "duration" and not re.fullmatch(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+|0", value):
        raise UsageError(f'invalid argument "{value}" for "--{name}" flag: time: invalid duration "{value}"')
    return value


# --------------------------------------------------------------------------------------------------
# Logging like kaniko (logrus): INFO[0000] message
# --------------------------------------------------------------------------------------------------


class KanikoLog:
    def __init__(self, write: Callable[[str], None], *, level: str = "info", fmt: str = "color", stamp: bool = False):
        self._write = write
        self._level = LOG_LEVELS.index(level)
        self._format = fmt
        self._stamp = stamp
        self._start = time.monotonic()

    def configure(self, level: str, fmt: str, stamp: bool) -> None:
        if level not in LOG_LEVELS:
            raise UsageError(f'parsing log level: not a valid logrus Level: "{level}"')
        if fmt not in ("text", "color", "json"):
            raise UsageError(f"parsing log format: unknown log format: {fmt}")
        self._level, self._format, self._stamp = LOG_LEVELS.index(level), fmt, stamp

    def raw(self, line: str) -> None:
        self._write(line)

    def log(self, level: str, message: str) -> None:
        if LOG_LEVELS.index(level) > self._level:
            return
        now = datetime.datetime.now(datetime.UTC)
        if self._format == "json":
            self._write(json.dumps({"level": level, "msg": message, "time": now.isoformat(timespec="seconds")}))
        elif self._format == "text":
            self._write(f'time="{now.isoformat(timespec="seconds")}" level={level} msg={json.dumps(message)}')
        else:
            stamp = now.isoformat(timespec="seconds") if self._stamp else f"{int(time.monotonic() - self._start):04d}"
            self._write(f"{level.upper()[:4]}[{stamp}] {message}")

    def info(self, message: str) -> None:
        self.log("info", message)

    def warn(self, message: str) -> None:
        self.log("warn", message)

    def debug(self, message: str) -> None:
        self.log("debug", message)


# --------------------------------------------------------------------------------------------------
# Dockerfile parsing (BuildKit's rules: directives, escape char, continuations, comments)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    rest: str  # everything after the keyword, continuations joined
    line: int  # first line, 1-based
    original: str  # "KEYWORD rest" as written (for logs and history)


DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


def parse_dockerfile(text: str) -> tuple[list[Instruction], str]:
    """Split a Dockerfile into instructions; returns (instructions, escape char). Raises BuildError."""
    lines = text.splitlines()
    escape = "\\"
    index = 0
    seen_directives: set[str] = set()
    while index < len(lines):  # parser directives come first, before any comment or blank line
        match = DIRECTIVE.match(lines[index])
        if not match or match.group(1).lower() in seen_directives:
            break
        name, value = match.group(1).lower(), match.group(2)
        seen_directives.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise BuildError(f"invalid escape token '{value}' does not match ` or \\")
            escape = value
        index += 1
    instructions: list[Instruction] = []
    while index < len(lines):
        start = index
        stripped = lines[index].strip()
        index += 1
        if not stripped or stripped.startswith("#"):
            continue
        parts = [stripped]
        while parts[-1].endswith(escape) and index < len(lines):
            parts[-1] = parts[-1][: -len(escape)]
            following = lines[index].strip()
            index += 1
            while (not following or following.startswith("#")) and index < len(lines):
                following = lines[index].strip()  # comments and blank lines inside a continuation vanish
                index += 1
            if following.startswith("#"):
                following = ""
            parts.append(following)
        if parts[-1].endswith(escape):
            parts[-1] = parts[-1][: -len(escape)]
        logical = " ".join(part.strip() for part in parts if part.strip())
        keyword, _, rest = logical.partition(" ")
        upper = keyword.upper()
        if upper not in KNOWN_INSTRUCTIONS:
            raise BuildError(f"dockerfile parse error on line {start + 1}: unknown instruction: {keyword}")
        instructions.append(Instruction(upper, rest.strip(), start + 1, f"{upper} {rest.strip()}".strip()))
    if not instructions:
        raise BuildError("file with no instructions")
    first_stage = next((i for i in instructions if i.keyword != "ARG"), None)
    if first_stage is None or first_stage.keyword != "FROM":
        raise BuildError(f"dockerfile parse error on line {instructions[0].line}: no build stage in current context")
    return instructions, escape


def exec_form(rest: str) -> list[str] | None:
    """The JSON array form (``["python", "app.py"]``), or None for the shell form."""
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return None


class Words:
    """BuildKit's shell-like word processing: quotes, escapes and ``$VAR``/``${VAR:-x}`` expansion."""

    def __init__(self, escape: str, env: Mapping[str, str]):
        self.escape = escape
        self.env = env

    def split(self, text: str) -> list[str]:
        return self._process(text, split=True)

    def word(self, text: str) -> str:
        return "".join(self._process(text, split=False))

    def _process(self, text: str, *, split: bool) -> list[str]:
        words: list[str] = []
        current: list[str] = []
        in_word = False
        i = 0
        while i < len(text):
            char = text[i]
            if split and char.isspace():
                if in_word:
                    words.append("".join(current))
                    current, in_word = [], False
                i += 1
                continue
            in_word = True
            if char == self.escape:
                if i + 1 < len(text):
                    current.append(text[i + 1])
                    i += 2
                else:
                    current.append(char)
                    i += 1
            elif char == "'":
                end = text.find("'", i + 1)
                if end < 0:
                    raise BuildError("unexpected end of statement while looking for matching single-quote")
                current.append(text[i + 1 : end])
                i = end + 1
            elif char == '"':
                i = self._double_quoted(text, i + 1, current)
            elif char == "$":
                value, i = self._variable(text, i)
                current.append(value)
            else:
                current.append(char)
                i += 1
        if in_word:
            words.append("".join(current))
        return words

    def _double_quoted(self, text: str, i: int, out: list[str]) -> int:
        while i < len(text):
            char = text[i]
            if char == '"':
                return i + 1
            if char == self.escape and i + 1 < len(text) and text[i + 1] in ('"', "$", self.escape):
                out.append(text[i + 1])
                i += 2
            elif char == "$":
                value, i = self._variable(text, i)
                out.append(value)
            else:
                out.append(char)
                i += 1
        raise BuildError("unexpected end of statement while looking for matching double-quote")

    def _variable(self, text: str, i: int) -> tuple[str, int]:
        if i + 1 < len(text) and text[i + 1] == "{":
            end, depth = i + 2, 1
            while end < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                end += 1
            if depth:
                raise BuildError(f"missing '}}' in substitution: {text[i:]}")
            return self._braced(text[i + 2 : end - 1]), end
        match = re.compile(r"[A-Za-z_][A-Za-z0-9_]*").match(text, i + 1)
        if not match:
            return "$", i + 1
        return self.env.get(match.group(0), ""), match.end()

    def _braced(self, body: str) -> str:
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+?])(.*))?", body, re.DOTALL)
        if not match:
            raise BuildError(f"bad substitution: ${{{body}}}")
        name, operator, word = match.groups()
        value = self.env.get(name)
        if operator is None:
            return value or ""
        unset = value is None or (operator.startswith(":") and value == "")
        if operator.endswith("-"):
            return self.word(word) if unset else value or ""
        if operator.endswith("+"):
            return "" if unset else self.word(word)
        if unset:
            raise BuildError(f"{name}: {self.word(word) or 'is not allowed to be unset'}")
        return value or ""


def split_flags(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """Leading ``--name=value`` words of an instruction."""
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    return flags, words


def name_values(words: list[str], keyword: str) -> list[tuple[str, str]]:
    pairs = []
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or not name:
            raise BuildError(f"{keyword} names can not be blank" if not name else f"{keyword} must have two arguments")
        pairs.append((name, value))
    return pairs


# --------------------------------------------------------------------------------------------------
# Build context: .dockerignore and wildcards (Go filepath.Match semantics, ** across directories)
# --------------------------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise BuildError(f"syntax error in pattern: {pattern}")
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("^") else body).replace("\\", "\\\\") + "]")
            i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _clean(path: str) -> str:
    parts: list[str] = []
    for part in path.replace("\\", "/").split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


class DockerIgnore:
    def __init__(self, lines: list[str]):
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw_line in lines:
            line = raw_line.strip()
            if not line or line.startswith("#"):
                continue
            exclude = not line.startswith("!")
            pattern = _clean(line.lstrip("!").strip())
            if pattern:
                self.rules.append((exclude, _pattern_regex(pattern)))

    def excluded(self, relative: str) -> bool:
        # A pattern that matches a directory excludes everything under it; the last match wins.
        result = False
        parents = relative.split("/")
        candidates = ["/".join(parents[: n + 1]) for n in range(len(parents))]
        for exclude, regex in self.rules:
            if any(regex.match(candidate) for candidate in candidates):
                result = exclude
        return result


class BuildContext:
    def __init__(self, root: Path, shown_root: str, ignore: DockerIgnore):
        self.root = root
        self.shown_root = shown_root.rstrip("/") or "/"
        self.ignore = ignore

    def relative(self, source: str) -> str:
        cleaned = _clean(source)
        depth = 0
        for part in source.replace("\\", "/").split("/"):
            depth += {"..": -1, "": 0, ".": 0}.get(part, 1)
            if depth < 0:
                raise BuildError(f"forbidden path outside the build context: {source}")
        return cleaned

    def resolve(self, source: str) -> list[str]:
        """Context-relative paths a COPY source names (wildcards expanded, .dockerignore applied)."""
        relative = self.relative(source)
        if not any(char in relative for char in "*?["):
            path = self.root / relative if relative else self.root
            if not (path.exists() or path.is_symlink()) or (relative and self.ignore.excluded(relative)):
                raise BuildError(f"file not found in build context or excluded by .dockerignore: stat {source}")
            return [relative]
        regex = _pattern_regex(relative)
        depth = relative.count("/") + 1
        matches = [
            candidate
            for candidate in self._walk()
            if candidate.count("/") + 1 == depth and regex.match(candidate) and not self.ignore.excluded(candidate)
        ]
        if not matches:
            raise BuildError(f"no source files were specified: no files in the build context match {source}")
        return sorted(matches)

    def _walk(self) -> list[str]:
        found: list[str] = []
        if self.root.is_symlink():
            return found  # Go's filepath.WalkDir does not descend into a root that is a symlink
        for directory, dirnames, filenames in os.walk(self.root):
            base = Path(directory).relative_to(self.root).as_posix()
            for name in sorted(dirnames) + sorted(filenames):
                found.append(name if base == "." else f"{base}/{name}")
        return found

    def shown(self, relative: str) -> str:
        return f"{self.shown_root.rstrip('/')}/{relative}" if relative else self.shown_root


# --------------------------------------------------------------------------------------------------
# Layers and the image
# --------------------------------------------------------------------------------------------------


@dataclass
class Entry:
    kind: str  # "file" | "dir" | "symlink"
    mode: int
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    data: bytes = b""
    target: str = ""


@dataclass
class Layer:
    blob: bytes
    digest: str
    diff_id: str


def make_layer(entries: Mapping[str, Entry]) -> Layer:
    """A gzipped tar, byte-identical for identical entries (sorted, fixed owners, gzip mtime 0)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(entries):
            entry = entries[path]
            info = tarfile.TarInfo(path + "/" if entry.kind == "dir" else path)
            info.mode, info.uid, info.gid, info.mtime = entry.mode, entry.uid, entry.gid, entry.mtime
            info.uname = info.gname = ""
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif entry.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, entry.target
                tar.addfile(info)
            else:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    uncompressed = raw.getvalue()
    blob = gzip.compress(uncompressed, compresslevel=6, mtime=0)
    return Layer(blob, sha256_digest(blob), sha256_digest(uncompressed))


@dataclass
class Reference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Docker reference rules: a first component with '.' or ':' (or 'localhost') is a registry."""
    rest, _, digest = text.partition("@")
    if digest and not DIGEST_PATTERN.match(digest):
        raise ValueError(f"invalid digest {digest!r} in {text!r}")
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, remainder
    else:
        registry, path = DEFAULT_REGISTRY, rest
    if registry == "docker.io":
        registry = DEFAULT_REGISTRY
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
        if not TAG_PATTERN.match(tag):
            raise ValueError(
                "tag can only contain the characters "
                f"`abcdefghijklmnopqrstuvwxyz0123456789_-.ABCDEFGHIJKLMNOPQRSTUVWXYZ`: {tag}"
            )
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    for component in path.split("/"):
        if not REPOSITORY_COMPONENT.match(component):
            raise ValueError(
                f"repository can only contain the characters `abcdefghijklmnopqrstuvwxyz0123456789_-./`: {path}"
            )
    if tag is None and not digest:
        tag = default_tag
    return Reference(registry, path, tag, digest or None)


def host_platform() -> tuple[str, str]:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return "linux", arch


@dataclass
class ImageState:
    """What the Dockerfile has built so far."""

    os: str
    architecture: str
    variant: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    layers: list[Layer] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)  # image path (no leading /) → "file" | "dir" | "symlink"
    author: str = ""
    base: str = ""

    def env_map(self) -> dict[str, str]:
        return dict(item.split("=", 1) for item in self.config.get("Env", []) if "=" in item)

    def set_env(self, name: str, value: str) -> None:
        env = self.config.setdefault("Env", [])
        for index, item in enumerate(env):
            if item.split("=", 1)[0] == name:
                env[index] = f"{name}={value}"
                return
        env.append(f"{name}={value}")

    def config_json(self, created: str) -> bytes:
        document: dict[str, Any] = {
            "architecture": self.architecture,
            "os": self.os,
            "created": created,
            "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in self.layers]},
            "history": self.history,
        }
        if self.variant:
            document["variant"] = self.variant
        if self.author:
            document["author"] = self.author
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    def manifest_json(self, config: bytes) -> bytes:
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": sha256_digest(config)},
            "layers": [
                {"mediaType": DOCKER_LAYER, "size": len(layer.blob), "digest": layer.digest} for layer in self.layers
            ],
        }
        return json.dumps(manifest, indent=3).encode()


@dataclass
class BuiltImage:
    config: bytes
    manifest: bytes
    layers: list[Layer]

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)


# --------------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------------


class Builder:
    """Applies instructions to an ImageState. One stage only (the sandbox cannot run multi-stage builds)."""

    def __init__(
        self,
        log: KanikoLog,
        context: BuildContext,
        *,
        build_args: dict[str, str],
        reproducible: bool,
        target_platform: tuple[str, str, str],
        target: str | None,
    ):
        self.log = log
        self.context = context
        self.build_args = build_args
        self.reproducible = reproducible
        self.os, self.arch, self.variant = target_platform
        self.target = target
        self.now = datetime.datetime.now(datetime.UTC)
        self.mtime_dirs = 0 if reproducible else int(self.now.timestamp())
        self.args: dict[str, str] = {}
        self.global_args: dict[str, str | None] = {}
        self.escape = "\\"
        self.image: ImageState | None = None
        self.shell = list(DEFAULT_SHELL)

    # -- helpers ------------------------------------------------------------------------------------

    @property
    def created(self) -> str:
        return REPRODUCIBLE_TIME if self.reproducible else self.now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def words(self, *, with_env: bool = True) -> Words:
        env = dict(self.args)
        if with_env and self.image is not None:
            env.update(self.image.env_map())
        return Words(self.escape, env)

    def history(self, created_by: str, *, empty_layer: bool, comment: str = "") -> None:
        assert self.image is not None
        entry: dict[str, Any] = {"created": self.created, "created_by": created_by, "author": KANIKO_AUTHOR}
        if empty_layer:
            entry["empty_layer"] = True
        if comment:
            entry["comment"] = comment
        self.image.history.append(entry)

    def automatic_args(self) -> dict[str, str]:
        build_os, build_arch = host_platform()
        target = f"{self.os}/{self.arch}" + (f"/{self.variant}" if self.variant else "")
        return {
            "TARGETPLATFORM": target,
            "TARGETOS": self.os,
            "TARGETARCH": self.arch,
            "TARGETVARIANT": self.variant,
            "BUILDPLATFORM": f"{build_os}/{build_arch}",
            "BUILDOS": build_os,
            "BUILDARCH": build_arch,
            "BUILDVARIANT": "",
        }

    # -- driving ------------------------------------------------------------------------------------

    def run(self, instructions: list[Instruction], escape: str) -> ImageState:
        self.escape = escape
        stages = [i for i in instructions if i.keyword == "FROM"]
        if len(stages) > 1:
            raise BuildError(
                "multi-stage builds are not supported by the knlab sandbox builder "
                f"(FROM on lines {', '.join(str(s.line) for s in stages)}): it cannot run the earlier stages' commands"
            )
        for instruction in instructions:
            handler = getattr(self, f"do_{instruction.keyword.lower()}")
            if self.image is None and instruction.keyword not in ("ARG", "FROM"):
                raise BuildError(
                    f"dockerfile parse error on line {instruction.line}: no build stage in current context"
                )
            handler(instruction)
        assert self.image is not None
        return self.image

    # -- instructions -------------------------------------------------------------------------------

    def do_arg(self, instruction: Instruction) -> None:
        words = self.words().split(instruction.rest)
        if not words:
            raise BuildError("ARG requires at least one argument")
        for word in words:
            name, has_default, default = word.partition("=")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise BuildError(f"invalid ARG name: {name}")
            value: str | None = default if has_default else None
            if self.image is None:
                self.global_args[name] = self.build_args.get(name, value)
                if self.global_args[name] is not None:
                    self.args[name] = self.global_args[name] or ""
                continue
            if name in self.build_args:
                value = self.build_args[name]
            elif value is None and self.global_args.get(name) is not None:
                value = self.global_args[name]
            elif value is None:
                value = self.automatic_args().get(name)
            if value is not None:
                self.args[name] = value
        if self.image is not None:
            self.log.info(instruction.original)
            self.log.info("No files changed in this command, skipping snapshotting.")

    def do_from(self, instruction: Instruction) -> None:
        words = self.words(with_env=False).split(instruction.rest)
        flags, words = split_flags(words)
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
            raise BuildError(
                f"dockerfile parse error on line {instruction.line}: FROM requires either one or three arguments"
            )
        if flags.get("platform"):
            self.log.info(f"Platform {flags['platform']} requested for the base image")
        stage_name = words[2].lower() if len(words) == 3 else ""
        if self.target and self.target.lower() not in (stage_name, "0"):
            raise BuildError(f"failed to reach build target {self.target} in Dockerfile")
        base = words[0]
        self.image = ImageState(self.os, self.arch, self.variant, config={})
        # Stage ARGs start empty; global ones come back only when re-declared (BuildKit rules).
        self.args = {}
        self.log.info(f"Resolved base name {base} to {stage_name or base}")
        if base.lower() == "scratch":
            self.log.info("No base image, nothing to extract")
            self.image.base = "scratch"
            self.history("FROM scratch", empty_layer=True)
        else:
            self.record_base(base, instruction)
        self.log.info("Built cross stage deps: map[]")
        self.log.info("Executing 0 build triggers")
        self.log.info(f"Building stage '{base}' [idx: '0', base-idx: '-1']")

    def record_base(self, base: str, instruction: Instruction) -> None:
        assert self.image is not None
        try:
            reference = parse_reference(base)
        except ValueError as error:
            raise BuildError(f"parsing base image {base}: {error}") from None
        self.log.info(f"Retrieving image manifest {base}")
        self.log.info(f"Retrieving image {base} from registry {reference.registry}")
        self.log.warn(
            f"The knlab sandbox cannot pull base images (it has no network): {reference} is recorded in the image "
            "config (labels and history) but its layers are not included; the image holds only what this "
            "Dockerfile adds"
        )
        labels = self.image.config.setdefault("Labels", {})
        labels[BASE_NAME_LABEL] = str(reference)
        if reference.digest:
            labels[BASE_DIGEST_LABEL] = reference.digest
        labels[BASE_LAYERS_LABEL] = "not-included"
        self.image.base = str(reference)
        self.history(
            instruction.original,
            empty_layer=True,
            comment=f"base image {reference} not pulled by the knlab sandbox: its layers are not included",
        )

    def do_run(self, instruction: Instruction) -> None:
        self.log.info(instruction.original)
        raise BuildError(
            f"error building stage: failed to execute command: {instruction.original} (line {instruction.line}): "
            "the knlab sandbox builder cannot execute commands, it has no container runtime; build without RUN "
            "(copy prepared files instead) or build on a real cluster"
        )

    def _key_values(self, instruction: Instruction, keyword: str, *, expand_legacy_name: bool) -> list[tuple[str, str]]:
        """ENV/LABEL arguments: `k=v k2=v2`, or the legacy `k value with spaces` form."""
        words = self.words().split(instruction.rest)
        if not words:
            raise BuildError(f"{keyword} requires at least one argument")
        if "=" in words[0]:
            return name_values(words, keyword)
        name, _, value = instruction.rest.partition(" ")
        return [(self.words().word(name) if expand_legacy_name else name, self.words().word(value.strip()))]

    def do_env(self, instruction: Instruction) -> None:
        assert self.image is not None
        for name, value in self._key_values(instruction, "ENV", expand_legacy_name=False):
            self.image.set_env(name, value)
        self.metadata(instruction)

    def do_label(self, instruction: Instruction) -> None:
        assert self.image is not None
        labels = self.image.config.setdefault("Labels", {})
        labels.update(self._key_values(instruction, "LABEL", expand_legacy_name=True))
        self.metadata(instruction)

    def do_maintainer(self, instruction: Instruction) -> None:
        assert self.image is not None
        self.image.author = instruction.rest
        self.metadata(instruction)

    def do_workdir(self, instruction: Instruction) -> None:
        assert self.image is not None
        path = self.words().word(instruction.rest)
        if not path:
            raise BuildError("WORKDIR requires exactly one argument")
        current = self.image.config.get("WorkingDir", "/")
        resolved = "/" + _clean(str(PurePosixPath(current) / path))
        self.image.config["WorkingDir"] = resolved
        self.log.info(instruction.original)
        self.log.info("Cmd: workdir")
        self.log.info(f"Changed working directory to {resolved}")
        relative = resolved.lstrip("/")
        if relative and self.image.paths.get(relative) != "dir":
            self.log.info(f"Creating directory {resolved} with uid -1 and gid -1")
            entries: dict[str, Entry] = {}
            self.add_parents(entries, relative + "/x", (0, 0))
            self.snapshot(entries, instruction)
        else:
            self.log.info("No files changed in this command, skipping snapshotting.")
            self.history(instruction.original, empty_layer=True)

    def do_expose(self, instruction: Instruction) -> None:
        assert self.image is not None
        ports = self.image.config.setdefault("ExposedPorts", {})
        for word in self.words().split(instruction.rest):
            number, _, protocol = word.partition("/")
            protocol = (protocol or "tcp").lower()
            if protocol not in ("tcp", "udp", "sctp"):
                raise BuildError(f"invalid proto: {protocol}")
            low, _, high = number.partition("-")
            if not low.isdigit() or (high and not high.isdigit()) or not 0 < int(low) <= 65535:
                raise BuildError(f"invalid containerPort: {number}")
            for port in range(int(low), int(high or low) + 1):
                ports[f"{port}/{protocol}"] = {}
        self.metadata(instruction)

    def do_user(self, instruction: Instruction) -> None:
        assert self.image is not None
        user = self.words().word(instruction.rest)
        if not user:
            raise BuildError("USER requires exactly one argument")
        self.image.config["User"] = user
        self.metadata(instruction)

    def do_volume(self, instruction: Instruction) -> None:
        assert self.image is not None
        paths = exec_form(instruction.rest) or self.words().split(instruction.rest)
        volumes = self.image.config.setdefault("Volumes", {})
        for path in paths:
            volumes[path] = {}
        self.metadata(instruction)

    def do_stopsignal(self, instruction: Instruction) -> None:
        assert self.image is not None
        self.image.config["StopSignal"] = self.words().word(instruction.rest)
        self.metadata(instruction)

    def do_shell(self, instruction: Instruction) -> None:
        assert self.image is not None
        shell = exec_form(instruction.rest)
        if not shell:
            raise BuildError("SHELL requires the arguments to be in JSON form")
        self.shell = shell
        self.image.config["Shell"] = shell
        self.metadata(instruction)

    def command(self, instruction: Instruction) -> list[str]:
        form = exec_form(instruction.rest)
        return form if form is not None else [*self.shell, instruction.rest]

    def do_cmd(self, instruction: Instruction) -> None:
        assert self.image is not None
        self.image.config["Cmd"] = self.command(instruction)
        self.metadata(instruction)

    def do_entrypoint(self, instruction: Instruction) -> None:
        assert self.image is not None
        self.image.config["Entrypoint"] = self.command(instruction)
        self.metadata(instruction)

    def do_onbuild(self, instruction: Instruction) -> None:
        assert self.image is not None
        keyword = instruction.rest.split(" ", 1)[0].upper()
        if keyword in ("ONBUILD", "FROM", "MAINTAINER"):
            raise BuildError(f"{keyword} isn't allowed as an ONBUILD trigger")
        self.image.config.setdefault("OnBuild", []).append(instruction.rest)
        self.metadata(instruction)

    def do_healthcheck(self, instruction: Instruction) -> None:
        assert self.image is not None
        words = instruction.rest.split()
        if words and words[0].upper() == "NONE":
            self.image.config["Healthcheck"] = {"Test": ["NONE"]}
            self.metadata(instruction)
            return
        flags: dict[str, str] = {}
        rest = instruction.rest
        while rest.startswith("--"):
            word, _, rest = rest.partition(" ")
            name, _, value = word[2:].partition("=")
            flags[name] = value
            rest = rest.lstrip()
        keyword, _, command = rest.partition(" ")
        if keyword.upper() != "CMD" or not command.strip():
            raise BuildError("Unknown type for HEALTHCHECK (expected CMD or NONE)")
        form = exec_form(command.strip())
        check: dict[str, Any] = {"Test": ["CMD", *form] if form is not None else ["CMD-SHELL", command.strip()]}
        for name, key in (
            ("interval", "Interval"),
            ("timeout", "Timeout"),
            ("start-period", "StartPeriod"),
            ("start-interval", "StartInterval"),
        ):
            if name in flags:
                check[key] = go_duration_ns(flags[name])
        if "retries" in flags:
            if not flags["retries"].isdigit():
                raise BuildError(f"invalid retries: {flags['retries']}")
            check["Retries"] = int(flags["retries"])
        self.image.config["Healthcheck"] = check
        self.metadata(instruction)

    def metadata(self, instruction: Instruction) -> None:
        self.log.info(instruction.original)
        self.log.info("No files changed in this command, skipping snapshotting.")
        self.history(instruction.original, empty_layer=True)

    # -- COPY / ADD ---------------------------------------------------------------------------------

    def do_copy(self, instruction: Instruction) -> None:
        self.copy(instruction, add=False)

    def do_add(self, instruction: Instruction) -> None:
        self.copy(instruction, add=True)

    def copy(self, instruction: Instruction, *, add: bool) -> None:
        assert self.image is not None
        if "<<" in instruction.rest:
            raise BuildError(f"{instruction.keyword} with a heredoc is not supported by the knlab sandbox builder")
        flags, remainder = self.leading_flags(instruction.rest)
        form = exec_form(remainder)
        words = [self.words().word(item) for item in form] if form is not None else self.words().split(remainder)
        for name in flags:
            if name == "from":
                raise BuildError(
                    f"{instruction.keyword} --from is not supported by the knlab sandbox builder (it builds one stage "
                    "and pulls no images)"
                )
            if name not in ("chown", "chmod", "link", "checksum", "keep-git-dir"):
                raise BuildError(f"unknown flag: --{name}")
        if len(words) < 2:
            raise BuildError(f"{instruction.keyword} requires at least two arguments, but only one was provided.")
        *sources, destination = words
        owner = self.owner(flags.get("chown", ""))
        chmod = self.chmod(flags.get("chmod", ""))
        for source in sources:
            if re.match(r"^[a-z][a-z0-9+.-]*://", source) or source.startswith("git@"):
                raise BuildError(
                    f"{instruction.keyword} {source}: the knlab sandbox has no network, "
                    "remote sources cannot be fetched"
                )
        resolved = [item for source in sources for item in self.context.resolve(source)]
        workdir = self.image.config.get("WorkingDir", "/")
        target = destination if destination.startswith("/") else f"{workdir.rstrip('/')}/{destination}"
        as_directory = destination.endswith("/") or destination in (".", "./") or destination.endswith("/.")
        if len(resolved) > 1 and not as_directory:
            raise BuildError(
                f"when using {instruction.keyword} with more than one source file, the destination must be a "
                "directory and end with a /"
            )
        destination_path = _clean(target)
        self.log.info(f"Using files from context: [{', '.join(self.context.shown(r) for r in resolved)}]")
        self.log.info(instruction.original)
        entries: dict[str, Entry] = {}
        for relative in resolved:
            self.copy_one(
                relative, destination_path, entries, as_directory=as_directory, owner=owner, chmod=chmod, add=add
            )
        self.snapshot(entries, instruction)

    def leading_flags(self, text: str) -> tuple[dict[str, str], str]:
        """``--name=value`` words before the arguments (values expanded); returns (flags, the rest)."""
        flags: dict[str, str] = {}
        rest = text.lstrip()
        while rest.startswith("--"):
            word, _, rest = rest.partition(" ")
            name, _, value = word[2:].partition("=")
            flags[name] = self.words().word(value)
            rest = rest.lstrip()
        return flags, rest

    def owner(self, chown: str) -> tuple[int, int]:
        if not chown:
            return 0, 0
        user, _, group = chown.partition(":")
        ids = []
        for name in (user, group or user):
            if name.isdigit():
                ids.append(int(name))
            elif name == "root":
                ids.append(0)
            else:
                raise BuildError(
                    f"--chown={chown}: the knlab sandbox cannot resolve the name {name!r} without the base image's "
                    "/etc/passwd and /etc/group; use numeric ids (e.g. --chown=1000:1000)"
                )
        return ids[0], ids[1]

    @staticmethod
    def chmod(value: str) -> int | None:
        if not value:
            return None
        if not re.fullmatch(r"[0-7]{3,4}", value):
            raise BuildError(f"invalid chmod parameter: {value} (the sandbox takes octal modes)")
        return int(value, 8)

    def copy_one(
        self,
        relative: str,
        destination: str,
        entries: dict[str, Entry],
        *,
        as_directory: bool,
        owner: tuple[int, int],
        chmod: int | None,
        add: bool,
    ) -> None:
        assert self.image is not None
        source = self.context.root / relative if relative else self.context.root
        into_directory = as_directory or self.image.paths.get(destination) == "dir"
        if source.is_dir() and not source.is_symlink():
            self.add_parents(entries, destination + "/x", owner)
            for directory, dirnames, filenames in os.walk(source):
                dirnames.sort()
                base = Path(directory).relative_to(source).as_posix()
                for name in dirnames + sorted(filenames):
                    inner = name if base == "." else f"{base}/{name}"
                    context_relative = f"{relative}/{inner}" if relative else inner
                    if self.context.ignore.excluded(context_relative):
                        continue
                    self.add_file(source / inner, _clean(f"{destination}/{inner}"), entries, owner=owner, chmod=chmod)
            return
        if add and tarfile.is_tarfile(source):
            self.extract(source, destination, entries, owner)
            return
        path = _clean(f"{destination}/{PurePosixPath(relative).name}") if into_directory else destination
        self.add_parents(entries, path, owner)
        self.add_file(source, path, entries, owner=owner, chmod=chmod)

    def add_file(
        self, source: Path, path: str, entries: dict[str, Entry], *, owner: tuple[int, int], chmod: int | None
    ) -> None:
        uid, gid = owner
        stat = source.lstat()
        mtime = 0 if self.reproducible else int(stat.st_mtime)
        if source.is_symlink():
            entries[path] = Entry("symlink", 0o777, uid, gid, mtime, target=os.readlink(source))
        elif source.is_dir():
            entries[path] = Entry("dir", chmod or (stat.st_mode & 0o7777), uid, gid, mtime)
        else:
            entries[path] = Entry("file", chmod or (stat.st_mode & 0o7777), uid, gid, mtime, data=source.read_bytes())

    def add_parents(self, entries: dict[str, Entry], path: str, owner: tuple[int, int]) -> None:
        uid, gid = owner
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            parent = "/".join(parts[:depth])
            if parent not in entries:
                entries[parent] = Entry("dir", 0o755, uid, gid, self.mtime_dirs)

    def extract(self, archive: Path, destination: str, entries: dict[str, Entry], owner: tuple[int, int]) -> None:
        self.add_parents(entries, destination + "/x", owner)
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                name = _clean(member.name)
                if not name:
                    continue
                path = _clean(f"{destination}/{name}")
                mtime = 0 if self.reproducible else int(member.mtime)
                self.add_parents(entries, path, owner)
                if member.isdir():
                    entries[path] = Entry("dir", member.mode & 0o7777, member.uid, member.gid, mtime)
                elif member.issym():
                    entries[path] = Entry("symlink", 0o777, member.uid, member.gid, mtime, target=member.linkname)
                elif member.isfile():
                    handle = tar.extractfile(member)
                    data = handle.read() if handle else b""
                    entries[path] = Entry("file", member.mode & 0o7777, member.uid, member.gid, mtime, data=data)
                else:
                    raise BuildError(
                        f"ADD {archive.name}: unsupported archive member {member.name} (not a file, dir or symlink)"
                    )

    def snapshot(self, entries: dict[str, Entry], instruction: Instruction) -> None:
        assert self.image is not None
        self.log.info("Taking snapshot of files...")
        if not entries:
            self.history(instruction.original, empty_layer=True)
            return
        layer = make_layer(entries)
        self.image.layers.append(layer)
        for path, entry in entries.items():
            self.image.paths[path] = entry.kind
        self.history(instruction.original, empty_layer=False)

    # -- the result ---------------------------------------------------------------------------------

    def finish(self, image: ImageState, labels: list[str]) -> BuiltImage:
        for item in labels:
            name, sep, value = item.partition("=")
            if not sep:
                raise BuildError(f"labels must be of the form key=value: {item}")
            image.config.setdefault("Labels", {})[name] = value
        config = image.config_json(self.created)
        return BuiltImage(config, image.manifest_json(config), list(image.layers))


def go_duration_ns(text: str) -> int:
    units = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise BuildError(f'time: invalid duration "{text}"')
    return int(sum(float(amount) * units[unit] for amount, unit in parts))


# --------------------------------------------------------------------------------------------------
# Pushing over the registry HTTP API v2
# --------------------------------------------------------------------------------------------------


def looks_local(registry: str) -> bool:
    """Whether kaniko talks plain HTTP to ``registry`` without being told to.

    go-containerregistry's ``name.Registry.Scheme`` as of v0.21 (what kaniko v1.27.x, the build
    role's default, vendors): RFC 1918 addresses, ``localhost:<port>``, ``*.localhost[:port]``, and
    any name containing ``127.0.0.1`` or ``::1`` (an unanchored match upstream). Everything else,
    ``*.local`` included, is HTTPS. (go-containerregistry up to v0.20.7 also took ``*.local`` as
    plain HTTP: sandbox/README.md, "Known differences".)
    """
    host = registry.split(":", 1)[0]
    if re.fullmatch(r"(10(\.\d{1,3}){3})|(192\.168(\.\d{1,3}){2})|(172\.(1[6-9]|2\d|3[01])(\.\d{1,3}){2})", host):
        return True
    if registry.startswith("localhost:") or re.fullmatch(r".*\.localhost(?::\d{1,5})?", registry):
        return True
    return "127.0.0.1" in registry or "::1" in registry


class RegistryClient(RegistryConnection):
    def __init__(self, session: aiohttp.ClientSession, registry: Registry, repository: str):
        super().__init__(session, registry, user_agent="kaniko/knlab-sandbox")
        self.repository = repository

    async def send(
        self, method: str, target: str, *, data: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Mapping[str, str], bytes]:
        async with self.request(method, target, data=data, headers=headers) as response:
            body = await response.read()
            return response.status, response.headers, body

    async def authenticate(self) -> None:
        status, headers, body = await self.send("GET", "/v2/")
        if status == 200:
            return
        if status != 401:
            raise PushError(f"GET {self.registry.base_url}/v2/: unexpected status code {status}: {describe(body)}")
        challenge = headers.get("WWW-Authenticate", "")
        if self.registry.credentials is None:
            raise PushError(
                f"UNAUTHORIZED: authentication required (no credentials for {self.registry.name} in the docker config)"
            )
        user, password = self.registry.credentials
        basic = basic_authorization(user, password)
        if challenge.lower().startswith("bearer"):
            self.authorization = await self.bearer_token(challenge, basic)
        else:
            self.authorization = basic
        status, _, body = await self.send("GET", "/v2/")
        if status != 200:
            raise PushError(f"UNAUTHORIZED: {describe(body)}")

    async def bearer_token(self, challenge: str, basic: str) -> str:
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = fields.get("realm")
        if not realm:
            raise PushError(f"registry {self.registry.name} sent a Bearer challenge without a realm")
        query = {"scope": f"repository:{self.repository}:push,pull"}
        if "service" in fields:
            query["service"] = fields["service"]
        async with self.session.get(f"{realm}?{urlencode(query)}", headers={"Authorization": basic}) as response:
            if response.status != 200:
                raise PushError(f"token request to {realm} failed with HTTP {response.status}")
            document = await response.json(content_type=None)
        token = document.get("token") or document.get("access_token")
        if not token:
            raise PushError(f"token response from {realm} has no token")
        return f"Bearer {token}"

    async def upload(self, blob: bytes, digest: str) -> bool:
        """Upload a blob unless the repository has it; True when it was uploaded."""
        status, _, _ = await self.send("HEAD", f"/v2/{self.repository}/blobs/{digest}")
        if status == 200:
            return False
        status, headers, body = await self.send("POST", f"/v2/{self.repository}/blobs/uploads/")
        if status != 202 or "Location" not in headers:
            raise PushError(f"POST /v2/{self.repository}/blobs/uploads/: HTTP {status}: {describe(body)}")
        status, headers, body = await self.send(
            "PATCH", headers["Location"], data=blob, headers={"Content-Type": "application/octet-stream"}
        )
        if status != 202 or "Location" not in headers:
            raise PushError(f"PATCH blob upload {digest}: HTTP {status}: {describe(body)}")
        location = headers["Location"]
        separator = "&" if "?" in location else "?"
        status, _, body = await self.send("PUT", f"{location}{separator}{urlencode({'digest': digest})}")
        if status != 201:
            raise PushError(f"PUT blob upload {digest}: HTTP {status}: {describe(body)}")
        return True

    async def put_manifest(self, reference: str, manifest: bytes) -> str:
        status, headers, body = await self.send(
            "PUT",
            f"/v2/{self.repository}/manifests/{reference}",
            data=manifest,
            headers={"Content-Type": DOCKER_MANIFEST},
        )
        if status != 201:
            raise PushError(f"PUT /v2/{self.repository}/manifests/{reference}: HTTP {status}: {describe(body)}")
        return headers.get("Docker-Content-Digest", sha256_digest(manifest))


def describe(body: bytes) -> str:
    """A registry error body as `CODE: message`, or the start of the raw text."""
    errors = registry_errors(body)
    if errors:
        return "; ".join(errors)
    return body[:200].decode(errors="replace").strip() or "(empty body)"


def docker_credentials(config_file: Path, registry: str) -> tuple[str, str] | None:
    try:
        document = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return None
    return docker_config_credentials(document, registry)


# --------------------------------------------------------------------------------------------------
# The executor
# --------------------------------------------------------------------------------------------------


@dataclass
class Environment:
    """How the build sees the world: path mapping, registry resolution and environment variables."""

    path_of: Callable[[str], Path] = Path
    cwd: str = "/"
    resolve: Resolver | None = None
    env: Mapping[str, str] = field(default_factory=dict)

    def host_path(self, path: str) -> Path:
        absolute = path if path.startswith("/") else f"{self.cwd.rstrip('/')}/{path}"
        return self.path_of("/" + _clean(absolute))


async def execute(argv: Sequence[str], write: Callable[[str], None], environment: Environment | None = None) -> int:
    """Run one kaniko executor invocation; returns its exit code (0 or 1). Never raises for bad input."""
    environment = environment or Environment()
    log = KanikoLog(write)
    try:
        options = parse_args(argv)
    except UsageError as error:
        log.raw(f"Error: {error}")
        return 1
    try:
        log.configure(
            options.get("verbosity", "info"), options.get("log-format", "color"), options.get("log-timestamp", False)
        )
        executor = Executor(options, log, environment)
        # Reading the context and compressing layers is file work: keep it off the event loop.
        image, destinations = await asyncio.to_thread(executor.build)
    except UsageError as error:
        log.raw(f"Error: {error}")
        return 1
    except BuildError as error:
        log.raw(f"error building image: {error}")
        return 1
    except OSError as error:
        log.raw(f"error building image: {error}")
        return 1
    try:
        # kaniko's DoPush writes the digest files first, then pushes (pkg/executor/push.go in
        # chainguard-dev/kaniko v1.25.5): a push that fails leaves them, and so the step's results.
        executor.write_outputs(image, destinations)
        await executor.push(image, destinations)
    except PushError as error:
        log.raw(f"error pushing image: {error}")
        return 1
    except OSError as error:
        log.raw(f"error writing output files: {error}")
        return 1
    return 0


class Executor:
    def __init__(self, options: Options, log: KanikoLog, environment: Environment):
        self.options = options
        self.log = log
        self.environment = environment

    def build(self) -> tuple[BuiltImage, list[Reference]]:
        options = self.options
        for name in options.ignored:
            self.log.info(f"Flag --{name} is not used by the knlab sandbox builder; ignored")
        if options.positional:
            self.log.warn(f"Ignoring arguments that are not flags: {' '.join(options.positional)}")
        no_push = options.get("no-push", False) or self.environment.env.get("KANIKO_NO_PUSH", "").lower() == "true"
        destinations_text = options.many("destination")
        if not no_push and not destinations_text:
            raise UsageError("you must provide --destination, or use --no-push")
        for flag, what in (
            ("image-name-with-digest-file", "ImageNameDigestFile"),
            ("image-name-tag-with-digest-file", "ImageNameTagDigestFile"),
        ):
            if options.get(flag) and not destinations_text:
                raise UsageError(f"you must provide --destination if setting {what}")
        if options.get("cache") and no_push and not options.get("cache-repo"):
            raise UsageError("cache flags invalid: if using cache with --no-push, specify cache repo with --cache-repo")
        if options.get("cache"):
            self.log.info("Caching is not implemented by the knlab sandbox builder; building without cache")
        destinations = []
        for text in destinations_text:
            try:
                if "@" in text:
                    raise ValueError(f"a digest is not a tag: {text}")
                destinations.append(parse_reference(text))
            except ValueError as error:
                raise BuildError(
                    "error checking push permissions -- make sure you entered the correct tag name, and that you are "
                    f"authenticated correctly, and try again: getting tag for destination: {error}"
                ) from None
        context = self.context()
        dockerfile = self.dockerfile(context)
        if not context.root.is_dir():
            raise BuildError(f"error resolving source context: context directory {context.shown_root} does not exist")
        ignore_lines: list[str] = []
        for candidate in (Path(str(dockerfile) + ".dockerignore"), context.root / ".dockerignore"):
            if candidate.is_file():
                ignore_lines = candidate.read_text().splitlines()
                break
        context.ignore = DockerIgnore(ignore_lines)
        instructions, escape = parse_dockerfile(dockerfile.read_text())
        builder = Builder(
            self.log,
            context,
            build_args=self.build_args(),
            reproducible=options.get("reproducible", False),
            target_platform=self.platform(),
            target=options.get("target"),
        )
        image = builder.run(instructions, escape)
        built = builder.finish(image, options.many("label"))
        if no_push:
            self.log.info("Skipping push to container registry due to --no-push flag")
        return built, ([] if no_push else destinations)

    def context(self) -> BuildContext:
        text = self.options.get("context", "/workspace/")
        if "://" in text:
            scheme, _, path = text.partition("://")
            if scheme != "dir":
                raise BuildError(
                    f"error resolving source context: the knlab sandbox builder supports only local directory "
                    f"contexts (a path or dir://), not {scheme}://"
                )
            text = path
        sub_path = self.options.get("context-sub-path", "")
        if sub_path:
            text = f"{text.rstrip('/')}/{sub_path}"
        root = self.environment.host_path(text)
        shown = text if text.startswith("/") else f"{self.environment.cwd.rstrip('/')}/{text}"
        return BuildContext(root, "/" + _clean(shown), DockerIgnore([]))

    def dockerfile(self, context: BuildContext) -> Path:
        text = self.options.get("dockerfile", "Dockerfile")
        if re.match(r"^https?://", text):
            raise BuildError("error resolving dockerfile path: the knlab sandbox has no network to fetch a Dockerfile")
        direct = self.environment.host_path(text)
        if direct.is_file():
            return direct
        in_context = context.root / text
        if not text.startswith("/") and in_context.is_file():
            return in_context
        raise BuildError(
            "error resolving dockerfile path: please provide a valid path to a Dockerfile within the build context "
            "with --dockerfile"
        )

    def build_args(self) -> dict[str, str]:
        values = {}
        for item in self.options.many("build-arg"):
            name, sep, value = item.partition("=")
            values[name] = value if sep else self.environment.env.get(name, "")
        return values

    def platform(self) -> tuple[str, str, str]:
        text = self.options.get("custom-platform") or self.options.get("customPlatform")
        if not text:
            return (*host_platform(), "")
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f'Invalid platform "{text}"')
        return parts[0], parts[1], parts[2] if len(parts) == 3 else ""

    # -- push ---------------------------------------------------------------------------------------

    def registry_for(self, reference: Reference) -> Registry:
        name = reference.registry
        insecure = self.options.get("insecure", False) or name in self.options.many("insecure-registry")
        skip_verify = self.options.get("skip-tls-verify", False) or name in self.options.many(
            "skip-tls-verify-registry"
        )
        scheme = "http" if insecure or looks_local(name) else "https"
        address = registry_address(name, self.environment.resolve)
        if address is None:
            raise PushError(
                f'failed to push to destination {reference}: Get "https://{name}/v2/": dial tcp: lookup '
                f"{name.split(':', maxsplit=1)[0]}: no such host (inside the knlab sandbox a registry is a hub "
                "Knative Service (name.namespace.svc.cluster.local or its external name) or 127.0.0.1:<port>; "
                "the sandbox has no network)"
            )
        if scheme == "https":  # the sandbox serves every registry over plain HTTP
            raise PushError(
                f'failed to push to destination {reference}: Get "https://{name}/v2/": dial tcp {name}:443: '
                f"connect: connection refused (the sandbox serves {name} over plain HTTP only: add "
                f"--insecure-registry={name} or --insecure)"
            )
        config_dir = self.environment.env.get("DOCKER_CONFIG", "/kaniko/.docker")
        credentials = docker_credentials(self.environment.host_path(f"{config_dir}/config.json"), name)
        return Registry(name, address, scheme, not skip_verify, credentials)

    async def push(self, image: BuiltImage, destinations: list[Reference]) -> None:
        if not destinations:
            return
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT * 5, sock_connect=10)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
            for reference in destinations:
                await self.push_one(session, image, reference)

    async def push_one(self, session: aiohttp.ClientSession, image: BuiltImage, reference: Reference) -> None:
        registry = self.registry_for(reference)
        client = RegistryClient(session, registry, reference.repository)
        self.log.info(f"Pushing image to {reference}")
        retries = max(0, int(self.options.get("push-retry", 0) or 0))
        for attempt in range(retries + 1):
            try:
                await client.authenticate()
                for layer in image.layers:
                    uploaded = await client.upload(layer.blob, layer.digest)
                    self.log.debug(f"{'Pushed' if uploaded else 'Existing'} blob {layer.digest}")
                await client.upload(image.config, sha256_digest(image.config))
                digest = await client.put_manifest(reference.tag or "latest", image.manifest)
                break
            except (TimeoutError, aiohttp.ClientError, OSError) as error:
                if attempt == retries:
                    raise PushError(
                        f"failed to push to destination {reference}: {registry.scheme}://{registry.name}/v2/: "
                        f"{error or type(error).__name__}"
                    ) from None
            except PushError as error:
                if attempt == retries:
                    raise PushError(f"failed to push to destination {reference}: {error}") from None
        if digest != image.digest:
            raise PushError(f"registry {registry.name} stored the manifest as {digest}, expected {image.digest}")
        self.log.info(f"Pushed {reference.name}@{digest}")

    # -- outputs ------------------------------------------------------------------------------------

    def write_outputs(self, image: BuiltImage, destinations: list[Reference]) -> None:
        digest = image.digest
        outputs = {
            "digest-file": digest,
            "image-name-with-digest-file": "".join(f"{d.name}@{digest}\n" for d in destinations),
            "image-name-tag-with-digest-file": "".join(f"{d.name}:{d.tag}@{digest}\n" for d in destinations),
        }
        for flag, content in outputs.items():
            target = self.options.get(flag)
            if not target:
                continue
            path = self.environment.host_path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)


def main(argv: Sequence[str] | None = None) -> int:
    def write(line: str) -> None:
        print(line, flush=True)

    environment = Environment(cwd=os.getcwd(), env=dict(os.environ))
    return asyncio.run(execute(list(sys.argv[1:] if argv is None else argv), write, environment))


if __name__ == "__main__":
    sys.exit(main())
