# edgepop — the two commands are `make demo` and `make test`; both set themselves up.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
RESULTS := build/test-results
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export RESULTS

.PHONY: help setup doctor demo demo-step test lint unit golden golden-update lab vm molecule docs lock clean

help:
	@echo "make demo    bring up the lab PoP, run the new-PoP playbook, show the result"
	@echo "make test    lint + unit + golden + lab + VM + Molecule tests (what CI runs)"
	@echo "make vm      the VM proofs alone: bonds and NIC queue interrupts, zero-touch provisioning (qemu, ~5 min)"
	@echo "make setup   install what both need (idempotent)"
	@echo "make doctor  check this machine has every program and kernel feature they need"
	@echo "make golden-update   re-render the golden files and docs after an intended change"

setup:
	@scripts/setup.sh

# doctor names every missing prerequisite at once, before anything is built or started.
doctor: setup
	@$(BIN)/edgepop doctor --quiet

demo: doctor
	@scripts/demo.sh

# Every step runs even when an earlier one failed, so one run shows every failure; the summary
# at the end decides the exit code.
test: setup
	@rm -rf $(RESULTS) && mkdir -p $(RESULTS)
	@scripts/run-step.sh doctor $(BIN)/edgepop doctor --quiet
	@$(MAKE) --no-print-directory lint unit golden lab demo-step vm molecule
	@echo; echo "=== summary"; $(BIN)/python scripts/test-summary.py $(RESULTS)

lint:
	@scripts/run-step.sh ruff $(BIN)/ruff check src tests bench plugins scripts molecule
	@scripts/run-step.sh ruff-format $(BIN)/ruff format --check src tests bench plugins scripts molecule
	@scripts/run-step.sh mypy $(BIN)/mypy
	@scripts/run-step.sh yamllint $(BIN)/yamllint -s .
	@scripts/run-step.sh ansible-lint $(BIN)/ansible-lint -q
	@scripts/run-step.sh validate-lab $(BIN)/edgepop validate inventory/lab
	@scripts/run-step.sh validate-examples bash -c 'for d in inventory/examples/*/; do $(BIN)/edgepop validate "$${d%/}" || exit 1; done'

unit:
	@scripts/run-pytest.sh unit tests/unit

# Golden files: the tests compare in memory; this step also re-renders on disk and fails if that
# leaves the work tree dirty (a template changed without its golden files).
golden:
	@scripts/run-pytest.sh golden tests/golden
	@scripts/run-step.sh golden-clean bash -c '$(BIN)/python tests/golden/regen.py >/dev/null && \
	  $(BIN)/edgepop schema --format markdown --out docs/data-model.md && \
	  git diff --exit-code --stat -- tests/golden docs/data-model.md && \
	  test -z "$$(git status --porcelain -- tests/golden docs/data-model.md)"'

golden-update:
	@$(BIN)/python tests/golden/regen.py
	@$(BIN)/edgepop schema --format markdown --out docs/data-model.md

lab:
	@scripts/run-pytest.sh lab tests/lab -m lab

# The README's first command, end to end, as one step of the test run (~3 min).
demo-step:
	@scripts/run-step.sh demo scripts/demo.sh

# Bonds and NIC queue interrupts on real kernels: two qemu guests (TCG, 3 vCPUs in all), the
# servers playbook against one of them (docs/servers.md, "The VM proof"); then zero-touch
# provisioning: a diskless guest netbooted from provisiond (docs/provisioning.md), one vCPU.
vm:
	@scripts/run-pytest.sh vm tests/vm -m vm

molecule:
	@scripts/run-step.sh molecule scripts/molecule-all.sh

docs:
	@$(BIN)/edgepop schema --format markdown --out docs/data-model.md

lock:
	@$(BIN)/pip freeze --exclude-editable | grep -v -E '^(pip|setuptools|wheel)==' > requirements.txt.new
	@(head -2 requirements.txt; cat requirements.txt.new) > requirements.txt.tmp && rm requirements.txt.new
	@mv requirements.txt.tmp requirements.txt

clean:
	rm -rf build out .pytest_cache .mypy_cache .ruff_cache
