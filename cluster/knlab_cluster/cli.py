"""`knlab-cluster build|up|down|status|kubeconfig|exec`: the real cluster, the twin of knlab-sandbox.

- build: every component from its pinned Go module, images into the mirror, install manifests
  (cached by version outside the checkout; a second build with the same pins does nothing).
- up: the node in its own network namespace, then CoreDNS and the Knative/Traefik/Tekton stack
  through roles/knative_stack; returns when every Deployment is Available and the webhooks answer.
  Running it again changes nothing; it cleans up after an earlier run that died.
- down: stops every process it started, removes the namespace, the mounts and the cgroups, and
  restores the sysctls the kubelet changed. `--purge` also forgets the cluster's data.
- restart NAME: stops one component and starts it again (the fault campaign's restarts).
- status: exits 0 when the cluster runs, 3 when it does not.
- exec -- CMD: runs CMD inside the namespace, with KUBECONFIG set to the cluster's.
- s3: prints the S3 server's endpoint, region, bucket, keys and bucket directory as JSON (the
  server is versitygw, started by up on the node's address; see s3.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys

from . import build as build_mod
from . import s3
from .node import HOLDER, Node, log
from .settings import Paths
from .stack import install

EXIT_NOT_RUNNING = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knlab-cluster", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build every component, image and manifest (cached by version)")
    b.add_argument("components", nargs="*", help="only these Go components (default: everything)")
    up = sub.add_parser("up", help="start the cluster and install the stack (no-op when it runs)")
    up.add_argument("--no-stack", action="store_true", help="start Kubernetes only, without Knative/Tekton")
    down = sub.add_parser("down", help="stop everything, remove the namespace and mounts, restore sysctls")
    down.add_argument("--purge", action="store_true", help="also delete the cluster's state (etcd, images, volumes)")
    rs = sub.add_parser("restart", help="stop one component (as status names it) and start it again")
    rs.add_argument("name", help="the component, for example kube-apiserver, etcd or kubelet")
    sub.add_parser("status", help="show the components' processes; exit 3 when the cluster is down")
    kc = sub.add_parser("kubeconfig", help="print the kubeconfig path (--print: its content)")
    kc.add_argument("--print", dest="show", action="store_true")
    sub.add_parser("s3", help="print the S3 server's endpoint, bucket and keys as JSON (for hubs on S3)")
    ex = sub.add_parser("exec", help="run a command inside the cluster's namespace: exec -- CMD ...")
    ex.add_argument("argv", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`knlab-cluster status | head -3`): nothing of ours failed. Python
        # would print a traceback when it flushes stdout at exit, so stdout goes to /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return code


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    paths = Paths.from_env()
    if args.command == "build":
        build_mod.build(paths, args.components or None)
        return 0
    if args.command == "up":
        built = build_mod.load(paths)
        node = Node(paths, built)
        node.up()
        if not args.no_stack:
            install(node, built)
        log(
            f"ready. kubectl --kubeconfig {paths.kubeconfig} ... (from the host, through 127.0.0.1), "
            "or knlab-cluster exec -- kubectl ... (inside the namespace)"
        )
        return 0
    if args.command == "s3":
        print(json.dumps(s3.endpoint(paths), indent=2))
        return 0
    node = Node(paths, build_mod.load(paths) if paths.build_manifest.exists() else None)
    if args.command == "down":
        node.down()
        if args.purge and paths.state.exists():
            shutil.rmtree(paths.state)
            log(f"removed {paths.state}")
        return 0
    if args.command == "restart":
        pid = node.restart(args.name)
        log(f"{args.name} started again, pid {pid}")
        return 0
    if args.command == "status":
        status = node.status()
        for name, pid in status.items():
            print(f"{name:24} {'running, pid ' + str(pid) if pid else 'stopped'}")
        return 0 if status[HOLDER] else EXIT_NOT_RUNNING
    if args.command == "kubeconfig":
        if not paths.kubeconfig.exists():
            print("no kubeconfig yet: knlab-cluster up writes it", file=sys.stderr)
            return EXIT_NOT_RUNNING
        print(paths.kubeconfig.read_text() if args.show else paths.kubeconfig)
        return 0
    if args.command == "exec":
        argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not argv:
            print("usage: knlab-cluster exec -- CMD [ARGS...]", file=sys.stderr)
            return 2
        env = {
            **os.environ,
            "KUBECONFIG": str(paths.inner_kubeconfig),
            "K8S_AUTH_KUBECONFIG": str(paths.inner_kubeconfig),
        }
        binaries = (node.build or {}).get("binaries", {})
        if "kubectl" in binaries:  # the kubectl built with the cluster, first on PATH
            env["PATH"] = f"{os.path.dirname(binaries['kubectl'])}:{env.get('PATH', '')}"
        holder = node.holder()
        return subprocess.call(
            ["nsenter", f"--target={holder}", "--mount", "--net", f"--wd={os.getcwd()}", "--", *argv], env=env
        )
    raise AssertionError(args.command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
