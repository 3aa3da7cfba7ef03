# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Kubernetes name rules shared by the modules' option checks.

Each caller words its own error (what the name is for matters to the user); the rule itself
lives here once.

Private to knlab.serverless: not a public API.
"""

from __future__ import annotations

import re
from typing import Any

# RFC 1123 label as Kubernetes checks it (apimachinery validation.IsDNS1123Label): namespaces,
# Knative Service and volume names, TaskRun names.
DNS1123_LABEL_MAX = 63
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def is_dns1123_label(value: Any) -> bool:
    """At most 63 lowercase letters, digits and '-', starting and ending with a letter or digit.

    ``fullmatch``: a ``$`` anchor would also accept a name with a trailing newline.
    """
    return isinstance(value, str) and 0 < len(value) <= DNS1123_LABEL_MAX and bool(_DNS1123_LABEL.fullmatch(value))
