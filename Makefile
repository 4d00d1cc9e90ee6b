# lmc_core build/report entry points. `make help` lists the targets.
PROFILE ?= quick
VENV ?= .venv
PYTHON ?= python3
TORCH ?= torch==2.13.0
# Optional notebook filter for `make figures`, e.g. NOTEBOOKS="01 02".
NOTEBOOKS ?=

VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install figures test bench clean distclean

help: ## List the targets
	@echo "Usage: make <target> [PROFILE=smoke|quick|paper] [VENV=.venv] [NOTEBOOKS=\"01 02\"]"
	@echo ""
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'
	@echo ""
	@echo "Current: PROFILE=$(PROFILE) VENV=$(VENV)"

install: $(STAMP) ## Create the venv (VENV) and install lmc_core (editable) with dev+hub extras

$(VPY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null || { \
		echo "error: lmc_core needs Python >= 3.10, but '$(PYTHON)' is $$($(PYTHON) -c 'import platform; print(platform.python_version())' 2>/dev/null || echo 'not a usable Python')."; \
		echo "       Install Python 3.10+ and rerun with: make install PYTHON=/path/to/python3.11"; \
		exit 1; }
	$(PYTHON) -m venv $(VENV)

# torch goes first, in its own pip call, so the exact CPU pin is resolved before
# anything else can drag in a different (CUDA) build.
$(STAMP): pyproject.toml | $(VPY)
	$(VPY) -m pip install "$(TORCH)"
	$(VPY) -m pip install -e ".[dev,hub]"
	@touch $@

figures: install ## Run the notebooks headless for PROFILE, write figures/ and reports/
	$(VPY) -m lmc_core figures --profile $(PROFILE) $(if $(strip $(NOTEBOOKS)),--notebooks $(NOTEBOOKS))

test: install ## Run the test suite
	$(VPY) -m pytest

bench: install ## Run the ensemble benchmark (bench/ensemble.py)
	$(VPY) -m lmc_core bench ensemble

clean: ## Remove generated reports and smoke figures
	rm -rf reports figures/smoke

distclean: clean ## Also remove the venv and runs/
	rm -rf $(VENV) runs
