# knlab.serverless — developer entry points. `make setup` once, then `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
BUILD := .build
# A collections path in which this checkout is knlab.serverless (a symlink, so edits show at once).
COLLECTIONS := $(abspath $(BUILD)/collections)
COLLECTION_LINK := $(COLLECTIONS)/ansible_collections/knlab/serverless
# ansible-test wants a real tree, so sanity runs on a copy of the tracked files.
SANITY_ROOT := $(abspath $(BUILD)/sanity)/ansible_collections/knlab/serverless
SANITY_PYTHON ?= 3.11
# Not part of the built collection (see build_ignore in galaxy.yml), so not part of its sanity run.
ANSIBLE_TEST_DIR = $(shell $(BIN)/python -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')
# The doc fragment and module_utils our modules extend come from here (validate-modules needs them).
KUBERNETES_CORE = $(shell $(BIN)/python -c 'import ansible_collections.kubernetes.core as c; print(list(c.__path__)[0])')
SANITY_SKIP := ^(sandbox|cluster|benchmarks|tests/sandbox|tests/cluster|tests/faults|tests/badinput|tests/conformance|docs)/

export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS):$(abspath $(VENV))/lib/python3.11/site-packages
export PATH := $(abspath $(BIN)):$(PATH)
# ansible-core 2.19 imports cryptography's DSA names (for its ssh-agent client), which cryptography
# 51 deprecates: every ansible command would print a CryptographyDeprecationWarning about DSA. This
# filter hides that one warning from that one module and nothing else; the user's own
# PYTHONWARNINGS filters stay (ours comes last, so it wins only for this warning).
comma := ,
ANSIBLE_DSA_WARNING := ignore:DSA is deprecated::ansible._internal._ssh._ssh_agent
export PYTHONWARNINGS := $(if $(findstring $(ANSIBLE_DSA_WARNING),$(PYTHONWARNINGS)),$(PYTHONWARNINGS),$(if $(PYTHONWARNINGS),$(PYTHONWARNINGS)$(comma))$(ANSIBLE_DSA_WARNING))
# Recipes that would echo long command lines run quietly; `make V=1 ...` shows them. Their output
# and errors show either way (make also names the recipe that failed).
Q := $(if $(filter 1,$(V)),,@)

.PHONY: help setup test units sanity lint badinput badinput-full sandbox integration molecule conformance conformance-sandbox conformance-cluster demo demo-clean hub-scale-demo autodeploy-demo demo-prerequisites demo-down clean build bench \
	cluster cluster-prerequisites cluster-build cluster-up cluster-down cluster-demo cluster-test faults faults-full molecule-cluster bench-cluster bench-autodeploy

help:
	@echo "make setup     create $(VENV) and install everything the tests need"
	@echo "make test      units + sanity + lint + badinput + sandbox + integration + molecule + conformance + cluster-test + faults (the CI gate)"
	@echo "make units | sanity | lint | badinput | sandbox | integration | molecule   one part of it"
	@echo "make badinput-full   every generated bad-input case, not only CI's seeded sample"
	@echo "make conformance     the differential suite on the sandbox and the real cluster (root), then every difference"
	@echo "make build     ansible-galaxy collection build"
	@echo "make demo      the whole demo on the embedded sandbox (DEMO_INTERACTIVE=1: step by step)"
	@echo "make demo-clean remove the demo from the sandbox (never from your own cluster)"
	@echo "make demo-down stop the sandbox"
	@echo "make hub-scale-demo   the hub on S3 with up to 3 replicas under load, one killed (a sandbox of its own; TARGET=cluster: the real cluster)"
	@echo "make autodeploy-demo  the demo + autodeploy on the sandbox (TARGET=cluster: the real cluster), then a push from outside and its new Revision"
	@echo "make cluster   build (once, ~40 min cold) and start the real cluster (root); cluster-down stops it"
	@echo "make cluster-demo | cluster-test   the demo | the end-to-end tests on the real cluster"
	@echo "make faults    faults injected into the real cluster during waits (a seeded sample, FAULTS_SEED) + the bad-input audit"
	@echo "make faults-full   >= 50 waits per fault kind and the demo under a fault; rewrites docs/RELIABILITY.md's table"
	@echo "V=1            show the long command lines that the demo, sanity and cluster-demo recipes run quietly"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

setup: $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet -e ./sandbox -e ./cluster
	mkdir -p $(dir $(COLLECTION_LINK))
	ln -sfn $(abspath .) $(COLLECTION_LINK)
	touch $(SETUP_STAMP)
	@command -v docker-registry >/dev/null || echo "note: docker-registry is missing (apt-get install -y docker-registry); tests that need it will fail"

test: units sanity lint badinput sandbox integration molecule conformance cluster-test faults

units:
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit

sandbox:
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/sandbox

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/yamllint -s .
	$(BIN)/ansible-lint --offline -q

sanity:
	$(Q)rm -rf $(abspath $(BUILD)/sanity) && mkdir -p $(SANITY_ROOT) $(abspath $(BUILD)/sanity)/ansible_collections/kubernetes
	$(Q)git ls-files -co --exclude-standard | grep -vE '$(SANITY_SKIP)' | tr '\n' '\0' \
	  | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C $(SANITY_ROOT)
	@pip_version=$$(sed -n "s/^ *pip='\([0-9.]*\)',/\1/p" $(ANSIBLE_TEST_DIR)/_internal/python_requirements.py); \
	  mkdir -p ~/.ansible/test/cache && \
	  cp tests/sanity/get_pip_offline.py ~/.ansible/test/cache/get_pip_$${pip_version//./_}.py
	$(Q)ln -sfn $(KUBERNETES_CORE) $(abspath $(BUILD)/sanity)/ansible_collections/kubernetes/core
	$(Q)cd $(SANITY_ROOT) && git init -q && git add -A && \
	  $(abspath $(BIN))/ansible-test sanity --python $(SANITY_PYTHON) --color no

build:
	$(BIN)/ansible-galaxy collection build --force

# --- the demo on the embedded sandbox ------------------------------------------------------------
SANDBOX_STATE ?= .sandbox
SANDBOX_CLI = $(BIN)/knlab-sandbox --state-dir $(SANDBOX_STATE)
# `make setup` again only when a requirements file changed since the last one.
SETUP_STAMP := $(VENV)/.knlab-setup
# The URL the Knative Service reports, and its answer through the sandbox's gateway (no DNS for
# *.sslip.io names needed: the gateway routes by Host header, as Knative's ingress does).
define DEMO_SHOW_APP
import json, sys, urllib.request
from kubernetes import client, config
config.load_kube_config(sys.argv[1])
ksvc = client.CustomObjectsApi().get_namespaced_custom_object("serving.knative.dev", "v1", sys.argv[2], "services", sys.argv[3])
url, gateway = ksvc["status"]["url"], json.load(open(sys.argv[4]))["gateway"]
host = url.split("://", 1)[1]
answer = urllib.request.urlopen(urllib.request.Request(gateway + "/", headers={"Host": host}), timeout=10).read()
print(f"URL:     {url}\nAnswer:  {answer.decode().strip()}\nCall it: curl -H 'Host: {host}' {gateway}/")
endef
export DEMO_SHOW_APP

$(SETUP_STAMP): requirements.txt requirements-dev.txt sandbox/pyproject.toml
	$(MAKE) setup
	touch $@

# The sandbox's hubs run the CNCF registry from Debian's package (sandbox/README.md).
demo-prerequisites:
	@if [ -n "$${KNLAB_DOCKER_REGISTRY:-}" ] || command -v docker-registry >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian's docker-registry (the CNCF registry the sandbox runs as the hub)"; \
	  apt-get update && apt-get install -y docker-registry; \
	else \
	  echo "make demo needs the CNCF distribution registry: install Debian's package with" >&2; \
	  echo "  sudo apt-get install -y docker-registry" >&2; \
	  echo "(or set KNLAB_DOCKER_REGISTRY to a registry binary), then run make demo again." >&2; \
	  exit 1; \
	fi

# The plays of `make demo` and `make demo-clean` talk to the sandbox and nothing else: its
# kubeconfig, and none of the shell's other K8S_AUTH_* settings (a K8S_AUTH_HOST or _CONTEXT would
# point them at another cluster).
SANDBOX_KUBECONFIG = $(abspath $(SANDBOX_STATE))/kubeconfig
SANDBOX_ENV = env $(foreach v,$(filter K8S_AUTH_%,$(.VARIABLES)),-u $(v)) -u KUBECONFIG \
	K8S_AUTH_KUBECONFIG=$(SANDBOX_KUBECONFIG) ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false

# DEMO_INTERACTIVE=1 pauses before each step with its explanation (only where stdin is a terminal).
demo: export K8S_AUTH_KUBECONFIG := $(abspath $(SANDBOX_STATE))/kubeconfig
# The plays run on the implicit localhost (so with this venv's Python): no inventory is expected.
demo: export ANSIBLE_LOCALHOST_WARNING := false
demo: export ANSIBLE_INVENTORY_UNPARSED_WARNING := false
demo: $(SETUP_STAMP) demo-prerequisites
	@if [ -n "$${DEMO_INTERACTIVE:-}" ] && [ -t 0 ]; then \
	  printf '\nThe sandbox: a Kubernetes API with Knative Serving and Tekton simulated, in one local\n'; \
	  printf 'process (state in $(SANDBOX_STATE)/). Press Enter to start it (nothing changes if it runs) '; \
	  read -r _; \
	fi
	$(Q)$(SANDBOX_CLI) up
	$(Q)$(SANDBOX_ENV) $(BIN)/ansible-playbook playbooks/sandbox-prepare.yml
	$(Q)$(SANDBOX_ENV) DEMO_INGRESS_ADDRESS=$$($(BIN)/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["gateway"])' \
	  $(SANDBOX_STATE)/server.json) $(BIN)/ansible-playbook playbooks/demo.yml
	@echo
	@$(BIN)/python -c "$$DEMO_SHOW_APP" $(SANDBOX_KUBECONFIG) $${DEMO_NAMESPACE:-default} hello $(SANDBOX_STATE)/server.json
	@echo "Objects: KUBECONFIG=$(SANDBOX_KUBECONFIG) kubectl get ksvc,revisions,taskruns"
	@echo "Clean:   make demo-clean   (removes the demo from the sandbox; make demo-down stops the sandbox)"

# Removes the demo from the sandbox (playbooks/cleanup.yml, through the roles' `absent` entry
# points), never from the cluster the shell's kubeconfig points at. A second run changes nothing.
demo-clean: $(SETUP_STAMP)
	@if ! $(SANDBOX_CLI) status >/dev/null 2>&1; then \
	  echo "The sandbox in $(SANDBOX_STATE)/ is not running: there is no demo to remove (make demo starts it)."; \
	  exit 0; \
	fi; \
	$(SANDBOX_ENV) $(BIN)/ansible-playbook playbooks/cleanup.yml && \
	echo "Check:   KUBECONFIG=$(SANDBOX_KUBECONFIG) kubectl get ksvc,taskruns,pvc"

demo-down:
	$(Q)$(SANDBOX_CLI) down

# The hub on object storage past one replica (issue 10): a sandbox and a versitygw of its own on
# loopback, the registry role with registry_storage=s3 and max-scale 3, concurrent pushers and
# pullers, one hub process killed; every acknowledged push pulled back and digest-checked.
# TARGET=cluster: on the real cluster (make cluster first; root): a hub of its own (hubscale) on the
# cluster's S3 server, loaded from inside the cluster's network namespace through the ingress, one of
# its pods force-deleted; the hub is removed at the end (its images stay in the bucket).
TARGET ?= sandbox
hub-scale-demo: $(SETUP_STAMP) $(if $(filter cluster,$(TARGET)),,demo-prerequisites)
	$(BIN)/python tests/integration/hub_scale.py --target $(TARGET)

# Push -> new Revision on the sandbox: the demo, playbooks/autodeploy.yml (the receiver built with
# kaniko and run as a Knative Service), then tests/integration/autodeploy_push.py pushes a new app
# to hub/hello:$(AUTODEPLOY_TAG) from outside the demo and waits (AUTODEPLOY_WAIT s) for exactly
# one new Revision Ready serving it; its last line sums up what it saw. Fails (exit 1) otherwise.
# TARGET=cluster: the same on the real cluster (make cluster first; root), through knlab-cluster exec.
AUTODEPLOY_TAG ?= latest
AUTODEPLOY_WAIT ?= 120
autodeploy-demo: export ANSIBLE_LOCALHOST_WARNING := false
autodeploy-demo: export ANSIBLE_INVENTORY_UNPARSED_WARNING := false
autodeploy-demo: export AUTODEPLOY_TAG := $(AUTODEPLOY_TAG)
autodeploy-demo: $(SETUP_STAMP) $(if $(filter cluster,$(TARGET)),,demo-prerequisites)
	@case "$(TARGET)" in sandbox|cluster) ;; *) \
	  echo "make autodeploy-demo: TARGET must be sandbox (the default) or cluster, not '$(TARGET)'" >&2; exit 2;; esac
ifeq ($(TARGET),cluster)
	$(Q)set -a && . $(CLUSTER_STATE)/demo.env && set +a && \
	  $(CLUSTER_CLI) exec -- $(BIN)/ansible-playbook playbooks/demo.yml && \
	  $(CLUSTER_CLI) exec -- $(BIN)/ansible-playbook playbooks/autodeploy.yml && \
	  $(CLUSTER_CLI) exec -- $(BIN)/python tests/integration/autodeploy_push.py --gateway "$$DEMO_INGRESS_ADDRESS" \
	    --namespace $${DEMO_NAMESPACE:-default} --tag $(AUTODEPLOY_TAG) --timeout $(AUTODEPLOY_WAIT) --label cluster
else
	$(Q)$(SANDBOX_CLI) up
	$(Q)$(SANDBOX_ENV) $(BIN)/ansible-playbook playbooks/sandbox-prepare.yml
	$(Q)gateway=$$($(BIN)/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["gateway"])' $(SANDBOX_STATE)/server.json) && \
	  $(SANDBOX_ENV) DEMO_INGRESS_ADDRESS=$$gateway $(BIN)/ansible-playbook playbooks/demo.yml && \
	  $(SANDBOX_ENV) DEMO_INGRESS_ADDRESS=$$gateway $(BIN)/ansible-playbook playbooks/autodeploy.yml && \
	  $(SANDBOX_ENV) $(BIN)/python tests/integration/autodeploy_push.py --kubeconfig $(SANDBOX_KUBECONFIG) \
	    --gateway $$gateway --namespace $${DEMO_NAMESPACE:-default} --tag $(AUTODEPLOY_TAG) \
	    --timeout $(AUTODEPLOY_WAIT) --label sandbox
endif

# The whole demo against fresh sandboxes: idempotence, a source change, check mode, cleanup.
integration:
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/integration

# Bad input by the hundred: a fixed, seeded sample of calls generated from every argument spec must
# each fail naming the option, with no traceback and not one request (~3 min). badinput-full: all.
badinput:
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/badinput

badinput-full:
	BADINPUT_ALL=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/badinput

# The differential suite (tests/conformance): the same scenarios on a private sandbox and on the
# real cluster, the cluster being the oracle. compare.py prints every difference and fails on one
# that sandbox/README.md does not list, with its reason, under "Known differences".
conformance: conformance-sandbox conformance-cluster
	$(BIN)/python tests/conformance/compare.py

conformance-sandbox: $(SETUP_STAMP) demo-prerequisites
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/conformance --target sandbox

conformance-cluster: cluster
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/conformance --target cluster

# molecule/sandbox: the demo as a Molecule scenario on a sandbox of its own (random ports).
molecule:
	$(BIN)/molecule test -s sandbox

# The real cluster: build, warm up, idle memory, the demo, wait latency -> RESULTS.md (~15 min, root).
bench-cluster: cluster-build
	$(BIN)/python benchmarks/cluster.py

# Push to Ready with the receiver (issue 10), on a running cluster with the demo applied by it,
# first with Knative's default readiness probe, then with the demo's (period 1 s):
# benchmarks/RESULTS.md's autodeploy block (about 6 minutes).
bench-autodeploy: cluster
	$(BIN)/python benchmarks/autodeploy_latency.py --compare-default

# Wait latency, the demo's runs and requests, sandbox start-up -> benchmarks/RESULTS.md (~15 min).
bench: $(SETUP_STAMP) demo-prerequisites
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(BUILD) knlab-serverless-*.tar.gz

# --- the real cluster (cluster/, root) -----------------------------------------------------------
CLUSTER_CLI = $(BIN)/knlab-cluster
CLUSTER_STATE ?= $(or $(KNLAB_CLUSTER_STATE),/srv/knlab-cluster)
# Debian packages the node runs (containerd, runc, CNI plugins) and the build uses (debootstrap,
# busybox-static for the shell images, gcc for pause).
CLUSTER_PACKAGES := containerd runc containernetworking-plugins iptables conntrack iproute2 util-linux socat \
	debootstrap busybox-static curl ca-certificates gcc libc6-dev

cluster-prerequisites:
	@if [ "$$(id -u)" != 0 ]; then echo "the real cluster needs root (network namespaces, mounts, cgroups)" >&2; exit 1; fi
	@command -v go >/dev/null || { echo "the real cluster is built with Go (1.26 or later): install it first" >&2; exit 1; }
	@missing=$$(for p in $(CLUSTER_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "Installing $$missing"; apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; fi

# Everything from the pinned Go modules, cached by version in $$KNLAB_CLUSTER_CACHE (/var/cache/knlab-cluster).
cluster-build: $(SETUP_STAMP) cluster-prerequisites
	$(CLUSTER_CLI) build

cluster-up: cluster-build
	$(CLUSTER_CLI) up

cluster: cluster-build cluster-up

cluster-down:
	$(CLUSTER_CLI) down

# playbooks/demo.yml, unchanged, inside the cluster's namespace; demo.env says where the hub's
# NodePort, the ingress and the images built here are.
cluster-demo: export ANSIBLE_LOCALHOST_WARNING := false
cluster-demo: export ANSIBLE_INVENTORY_UNPARSED_WARNING := false
cluster-demo: $(SETUP_STAMP)
	$(Q)set -a && . $(CLUSTER_STATE)/demo.env && set +a && \
	  $(CLUSTER_CLI) exec -- $(BIN)/ansible-playbook playbooks/demo.yml
	@$(CLUSTER_CLI) exec -- kubectl get ksvc,taskruns
	@echo "More: $(CLUSTER_CLI) exec -- kubectl get pods -A   (or kubectl --kubeconfig $(CLUSTER_STATE)/kubeconfig ...)"

# molecule/cluster: the demo under Molecule on the real cluster (create = up ... destroy = down).
molecule-cluster: cluster-build
	$(BIN)/molecule test -s cluster

# The end-to-end tests on the real cluster (builds and starts it first; the last test stops it and
# checks that nothing is left: `make cluster-up` brings it back with its data).
cluster-test: cluster
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/cluster

# Faults injected into the real cluster during waits (tests/faults, issue 11), then the bad-input
# audit on the API server's log, then `down` checked as cluster-test ends (tests/faults/run.py; one
# pytest each). The last line sums them up. FAULTS_SEED picks the sample (default: today's number).
faults: cluster
	$(BIN)/python tests/faults/run.py

# The full campaign (>= 50 waits per fault kind, the demo under a fault; about an hour): rewrites
# the table in docs/RELIABILITY.md ("Faults on the real cluster").
faults-full: cluster
	$(BIN)/python tests/faults/run.py --full
