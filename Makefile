# One-command entry points. `make install` once, then `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install postgres browser node test unit integration lint format crds controlplane image clean

install: postgres browser node $(VENV)/.installed controlplane

# PostgreSQL server binaries for the store tests (Debian's package, only when missing).
postgres:
	bash .ci/install-postgres

# Chromium for the portal's browser tests (Debian's package, only when missing; Playwright
# drives /usr/bin/chromium and never downloads a browser of its own).
browser:
	bash .ci/install-chromium

# containerd, runc, buildah and debootstrap for the node tests (Debian's packages, only when
# missing; containerd's service is never started: the node runs its own).
node:
	bash .ci/install-node

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Builds (once per machine, cached outside the tree) kube-apiserver, etcd,
# kube-controller-manager, helm and promtool; fast when already built.
controlplane: $(VENV)/.installed
	$(BIN)/webhook-operator cluster build

# The image from the unmodified Dockerfile (docker/podman when one answers, else buildah on a
# locally made base), cached by source hash; the node tests load it into their containerd.
image: $(VENV)/.installed
	$(BIN)/webhook-operator cluster image

# The whole suite: unit tests and the integration tests against a real local control plane.
test: $(VENV)/.installed controlplane
	$(BIN)/pytest

unit: $(VENV)/.installed
	$(BIN)/pytest tests/unit

integration: $(VENV)/.installed controlplane
	$(BIN)/pytest tests/integration

lint: $(VENV)/.installed
	$(BIN)/ruff format --check operator tests bench
	$(BIN)/ruff check operator tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	cd tests/controlplane && test -z "$$(gofmt -l .)"
	cd bench/receiver_go && test -z "$$(gofmt -l .)" && go vet .

format: $(VENV)/.installed
	$(BIN)/ruff format operator tests bench
	$(BIN)/ruff check --fix operator tests bench

crds: $(VENV)/.installed
	$(BIN)/webhook-operator crds --output-dir crds --reference docs/crd-reference.md
	$(BIN)/python -m webhook_operator.devcluster.chart sync-crds

# manifests/webhook-operator.yaml: the Helm chart rendered with its default values (a test
# fails when it is stale). Regenerates the CRDs first, since the manifests include them.
.PHONY: manifests
manifests: crds
	$(BIN)/python -m webhook_operator.devcluster.chart manifests

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
