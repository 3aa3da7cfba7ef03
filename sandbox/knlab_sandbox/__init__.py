"""knlab-sandbox: an embedded Kubernetes-compatible control plane for knlab.serverless.

One asyncio process serves a Kubernetes API over HTTPS (objects in SQLite), simulates Knative
Serving and Tekton with controllers that use the same API paths as external clients, and runs
revisions and builds as local processes. See sandbox/README.md and docs/INTERNALS.md.
"""

from __future__ import annotations

__version__ = "0.1.0"
