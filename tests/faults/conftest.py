"""The fault campaign uses the real cluster as tests/cluster does: the same `Cluster` helper and
the same session fixture (`knlab-cluster up`, a no-op when it runs), loaded by faultlib."""

from __future__ import annotations

from faultlib import cluster_helpers

cluster = cluster_helpers.cluster
