"""Set the sandbox's observations beside the real cluster's and print every difference.

    python tests/conformance/compare.py [SANDBOX_JSON CLUSTER_JSON [KNOWN_DIFFERENCES_MD]]

The cluster is the oracle. A difference is *known* when sandbox/README.md, under "Known
differences", names its observation key in backquotes on a line that starts with "Conformance:"
(a key may end in "*" to cover every key with that prefix), next to the reason. Exit status: 0
when every difference is known, 1 otherwise (and when a listed key no longer differs, so the list
stays true), 2 when a file is missing.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / ".build" / "conformance"
MISSING = "(not observed)"


def known_keys(readme: Path) -> list[str]:
    text = readme.read_text()
    section = text.split("## Known differences", 1)
    if len(section) < 2:
        return []
    body = re.split(r"^## ", section[1], maxsplit=1, flags=re.M)[0]
    keys: list[str] = []
    for line in body.splitlines():
        stripped = line.strip()
        if stripped.startswith("Conformance:"):
            keys.extend(re.findall(r"`([^`]+)`", stripped))
    return keys


def covered(key: str, patterns: list[str]) -> str | None:
    for pattern in patterns:
        if pattern == key or (pattern.endswith("*") and key.startswith(pattern[:-1])):
            return pattern
    return None


def differences(sandbox: dict, cluster: dict) -> dict[str, tuple[object, object]]:
    return {
        key: (sandbox.get(key, MISSING), cluster.get(key, MISSING))
        for key in sorted(set(sandbox) | set(cluster))
        if sandbox.get(key, MISSING) != cluster.get(key, MISSING)
    }


def show(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def main(argv: list[str]) -> int:
    sandbox_path = Path(argv[0]) if argv else RESULTS / "sandbox.json"
    cluster_path = Path(argv[1]) if len(argv) > 1 else RESULTS / "cluster.json"
    readme = Path(argv[2]) if len(argv) > 2 else ROOT / "sandbox" / "README.md"
    for path in (sandbox_path, cluster_path):
        if not path.exists():
            print(f"{path} is missing: run the suite on that target first (make conformance)", file=sys.stderr)
            return 2
    sandbox = json.loads(sandbox_path.read_text())
    cluster = json.loads(cluster_path.read_text())
    patterns = known_keys(readme)
    found = differences(sandbox, cluster)
    unknown = 0
    used: set[str] = set()
    for key, (seen_here, seen_there) in found.items():
        pattern = covered(key, patterns)
        if pattern:
            used.add(pattern)
        else:
            unknown += 1
        label = f"known ({pattern})" if pattern else "NOT LISTED"
        print(f"{label}: {key}\n    cluster: {show(seen_there)}\n    sandbox: {show(seen_here)}")
    stale = [pattern for pattern in patterns if pattern not in used]
    for pattern in stale:
        print(f"STALE: {pattern} is listed in {readme.name} but no observation differs")
    same = len(set(sandbox) | set(cluster)) - len(found)
    print(
        f"conformance: {same} observations agree, {len(found) - unknown} differ as listed, "
        f"{unknown} differ and are not listed, {len(stale)} listed entries are stale"
    )
    return 1 if unknown or stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
