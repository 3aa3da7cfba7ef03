"""The cluster is air-gapped: shown from the namespace's own links and routes, without sending
a packet anywhere (the network rule forbids even trying an outside address)."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import Cluster

pytestmark = pytest.mark.timeout(1500)  # the fixture may have to start the cluster first

NETNS = "knlab-cluster"
NODE_BRIDGE = "knlab0"
POD_BRIDGE = "cni0"


def _links(cluster: Cluster) -> list[dict]:
    return json.loads(cluster.exec("ip", "-j", "-d", "link", "show"))


def test_the_namespace_has_no_interface_to_the_outside(cluster: Cluster) -> None:
    links = _links(cluster)
    names = {link["ifname"] for link in links}
    assert {"lo", NODE_BRIDGE} <= names
    for link in links:
        kind = link.get("linkinfo", {}).get("info_kind")
        if link["ifname"] in ("lo", NODE_BRIDGE, POD_BRIDGE):
            continue
        # Anything else is one end of a pod's veth pair, a port of the pod bridge.
        assert kind == "veth", f"unexpected interface in the cluster's namespace: {link}"
        assert link.get("master") == POD_BRIDGE, f"a veth that is not a pod's: {link}"
    # The node's bridge, which the default route points at, has no port at all.
    assert json.loads(cluster.exec("ip", "-j", "link", "show", "master", NODE_BRIDGE)) == []


def test_every_route_ends_inside_the_namespace(cluster: Cluster) -> None:
    pod_veths = {link["ifname"] for link in _links(cluster) if link.get("master") == POD_BRIDGE}
    for family in ("-4", "-6"):
        routes = json.loads(cluster.exec("ip", family, "-j", "route", "show", "table", "all"))
        devices = {route.get("dev") for route in routes if route.get("dev")}
        # The pods' veths carry only their IPv6 link-local routes; nothing else leads anywhere.
        assert devices <= {"lo", NODE_BRIDGE, POD_BRIDGE} | pod_veths, routes
        gateways = [route for route in routes if route.get("gateway")]
        assert gateways == [], f"a route through a gateway: {gateways}"
    # An address outside (TEST-NET-1, never routed anywhere) resolves to the portless bridge.
    route = json.loads(cluster.exec("ip", "-j", "route", "get", "192.0.2.1"))[0]
    assert route["dev"] == NODE_BRIDGE


def test_the_pod_veths_peers_live_in_pod_namespaces_not_on_the_host(cluster: Cluster) -> None:
    host_links = json.loads(
        subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    )
    # No interface of the host's namespace is one end of a pair whose other end is in the cluster
    # (a host link that leads into another namespace names that namespace's id).
    cluster_id = subprocess.run(["ip", "netns", "list-id"], capture_output=True, text=True, check=True).stdout
    ids = {line.split()[1] for line in cluster_id.splitlines() if f"name: {NETNS})" in line}
    for link in host_links:
        assert str(link.get("link_netnsid")) not in ids, f"host interface {link['ifname']} leads into the cluster"
