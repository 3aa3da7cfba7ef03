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
SANITY_SKIP := ^(sandbox|benchmarks|tests/sandbox|docs)/

export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS):$(abspath $(VENV))/lib/python3.11/site-packages
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help setup test units sanity lint sandbox molecule demo demo-down clean build

help:
	@echo "make setup     create $(VENV) and install everything the tests need"
	@echo "make test      units + sanity + lint + sandbox (the CI gate)"
	@echo "make units | sanity | lint | sandbox   one part of it"
	@echo "make build     ansible-galaxy collection build"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

setup: $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet -e ./sandbox
	mkdir -p $(dir $(COLLECTION_LINK))
	ln -sfn $(abspath .) $(COLLECTION_LINK)
	@command -v docker-registry >/dev/null || echo "note: docker-registry is missing (apt-get install -y docker-registry); tests that need it will fail"

test: units sanity lint sandbox

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
	rm -rf $(abspath $(BUILD)/sanity) && mkdir -p $(SANITY_ROOT) $(abspath $(BUILD)/sanity)/ansible_collections/kubernetes
	git ls-files -co --exclude-standard | grep -vE '$(SANITY_SKIP)' | tr '\n' '\0' \
	  | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C $(SANITY_ROOT)
	@pip_version=$$(sed -n "s/^ *pip='\([0-9.]*\)',/\1/p" $(ANSIBLE_TEST_DIR)/_internal/python_requirements.py); \
	  mkdir -p ~/.ansible/test/cache && \
	  cp tests/sanity/get_pip_offline.py ~/.ansible/test/cache/get_pip_$${pip_version//./_}.py
	ln -sfn $(KUBERNETES_CORE) $(abspath $(BUILD)/sanity)/ansible_collections/kubernetes/core
	cd $(SANITY_ROOT) && git init -q && git add -A && \
	  $(abspath $(BIN))/ansible-test sanity --python $(SANITY_PYTHON) --color no

build:
	$(BIN)/ansible-galaxy collection build --force

clean:
	rm -rf $(BUILD) knlab-serverless-*.tar.gz
