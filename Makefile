# The commands of the README, from a fresh clone with python3, pip, npm and go (actionlint's build).
#   make demo   set up, then play the local stack's release: train, wait, serve, recommend
#   make test   set up, then lint (ruff), check formatting and types (mypy), and run every test
#               (actionlint over the workflows among them)
#   make e2e    set up, then the release against real parts: Docker engine, images, the Pulumi engine
#   make bench  set up, then run the benchmarks (figures go to docs/BENCHMARKS.md)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
AZURITE := node_modules/.bin/azurite-blob
CHECKOV := .venv-checkov/bin/checkov
ACTIONLINT := .tools/bin/actionlint
ACTIONLINT_VERSION := v1.7.12
APP_PATHS := apps/shared apps/trainer apps/waiter apps/scorer

.PHONY: setup demo test e2e bench clean

setup: $(STAMP) $(AZURITE) $(CHECKOV) $(ACTIONLINT)

# The apps run from the repo root as `python -m trainer|waiter|scorer` (docs/CONTRACTS.md): a .pth
# file puts their folders on the venv's path, as the images do with PYTHONPATH.
$(STAMP): requirements.txt requirements-dev.txt apps/*/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -c 'import sys, sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()["purelib"], "mlpipeline-apps.pth").write_text("\n".join(sys.argv[1:]) + "\n")' $(abspath $(APP_PATHS))
	touch $@

# checkov (Kubernetes policy checks in `make test`) pins older packaging, boto3, networkx... than
# the program and the apps use: it gets a venv of its own.
$(CHECKOV): requirements-checkov.txt
	test -x .venv-checkov/bin/python || $(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

# actionlint (the GitHub workflows' checker, tests/test_ci_templates.py) is a Go program: built from
# its module at the pinned version (the Go module proxy is the one place it is served from).
$(ACTIONLINT): Makefile
	GOBIN=$(abspath .tools/bin) GOFLAGS=-mod=mod go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)
	touch $@

# A node_modules that is a link (git worktrees share one) is kept: `npm ci` through the link would
# empty the folder every worktree uses while it reinstalls, failing their Azurite tests meanwhile.
$(AZURITE): package.json package-lock.json
	if [ -L node_modules ] && [ -e $(AZURITE) ]; then echo "node_modules is a shared link: kept"; \
	else npm ci --no-audit --no-fund --loglevel=error; fi
	touch $@

demo: $(STAMP)
	$(PY) -m local.demo

# ruff and mypy read pyproject.toml: every Python file of the repo (tests, e2e, bench, local too).
test: setup
	$(PY) -m ruff check
	$(PY) -m ruff format --check
	$(PY) -m mypy
	$(PY) -m pytest -q

# The real parts: Docker engine, images, the Pulumi engine and a Kubernetes API server (needs root).
e2e: setup
	$(PY) -m e2e

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) .venv-checkov .tools node_modules .demo .bench .e2e .pytest_cache
