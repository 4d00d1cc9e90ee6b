# lmc_core build/report entry points. `make help` lists the targets.
PROFILE ?= quick
VENV ?= .venv
PYTHON ?= python3
# The exact torch installed first. The CPU build of torch 2.13.0; on an ordinary machine pip's
# default index gives a multi-GB CUDA build for that pin, so pass PyTorch's CPU wheel index with
# TORCH_INDEX=<url> (see the README), or set TORCH to another requirement for the build you want.
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
# Optional notebook filter for `make figures`, e.g. NOTEBOOKS="01 02".
NOTEBOOKS ?=
# Notebooks run at once by `make figures` (each trains with one torch thread): the machine's cores.
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
# A capped run (e.g. CAP_STEPS=2 with PROFILE=paper): every training run stops after that many updates, evaluation
# on small samples; proves the profile runs and prints its projected cost (figures/<profile>-capped, not a result).
CAP_STEPS ?=
# Extras installed with the project, e.g. EXTRAS=hub (the online dataset routes) or EXTRAS=hub,lab.
# The default is what every notebook needs offline; `make test` adds the dev extra itself.
EXTRAS ?=

VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.dev-installed
LAB_STAMP := $(VENV)/.lab-installed

.DEFAULT_GOAL := help
.PHONY: help install figures test test-unit test-integration test-paper bench lab test-colab clean distclean

help: ## List the targets
	@echo "Usage: make <target> [PROFILE=smoke|quick|paper] [CAP_STEPS=n] [VENV=.venv] [NOTEBOOKS=\"01 02\"] [JOBS=n] [EXTRAS=hub] [TORCH_INDEX=url]"
	@echo ""
	@grep -E '^[a-z][a-zA-Z_-]*:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-11s %s\n", $$1, $$2}'
	@echo ""
	@echo "Current: PROFILE=$(PROFILE) VENV=$(VENV) TORCH=$(TORCH)"

install: $(STAMP) ## Create the venv (VENV), install lmc_core (editable; EXTRAS=hub for the online routes), strip notebook outputs on commit

$(VPY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null || { \
		echo "error: lmc_core needs Python >= 3.10, but '$(PYTHON)' is $$($(PYTHON) -c 'import platform; print(platform.python_version())' 2>/dev/null || echo 'not a usable Python')."; \
		echo "       Install Python 3.10+ and rerun with: make install PYTHON=/path/to/python3.11"; \
		exit 1; }
	$(PYTHON) -m venv $(VENV)

# torch goes first, in its own pip call, so the exact build is resolved before anything else can
# drag in a different (CUDA) one; pyproject only asks for a range that it satisfies.
$(STAMP): pyproject.toml | $(VPY)
	$(VPY) -m pip install "$(TORCH)" $(if $(strip $(TORCH_INDEX)),--index-url $(TORCH_INDEX))
	$(VPY) -m pip install -e ".$(if $(strip $(EXTRAS)),[$(strip $(EXTRAS))])"
	@# notebooks are stored without outputs: a git filter strips them when they are added
	@if git rev-parse --git-dir >/dev/null 2>&1; then \
		git config filter.nbstripout.clean '"$(abspath $(VPY))" -m nbstripout --keep-id' && \
		git config filter.nbstripout.smudge cat && git config filter.nbstripout.required true && \
		git config diff.ipynb.textconv '"$(abspath $(VPY))" -m nbstripout -t' && \
		echo "nbstripout: notebook outputs are stripped on git add (see .gitattributes)"; \
	fi
	@touch $@

figures: install ## Run the notebooks headless for PROFILE, write figures/ and reports/ (quick: also README results)
	$(VPY) -m lmc_core figures --profile $(PROFILE) --jobs $(JOBS) $(if $(strip $(NOTEBOOKS)),--notebooks $(NOTEBOOKS)) $(if $(strip $(CAP_STEPS)),--cap-steps $(CAP_STEPS))
	$(if $(and $(filter quick,$(PROFILE)),$(if $(strip $(CAP_STEPS)),,yes)),$(VPY) -m lmc_core readme --profile quick)

$(DEV_STAMP): $(STAMP)
	$(VPY) -m pip install -e ".[dev]"
	@touch $@

test: $(DEV_STAMP) ## Run the whole test suite (unit, integration, notebooks; what CI runs); installs the dev extra
	$(VPY) -m pytest

test-unit: $(DEV_STAMP) ## Run the unit tests alone (seconds: functions and tiny models)
	$(VPY) -m pytest tests/unit

test-integration: $(DEV_STAMP) ## Run the unit and integration tests (tiny training runs), no notebooks
	$(VPY) -m pytest tests/unit tests/integration

test-paper: $(DEV_STAMP) ## Run every notebook's paper profile capped at one update per run, to its HTML report (over an hour on 2 cores; not in CI)
	$(VPY) -m pytest tests/paper

lab: install $(LAB_STAMP) ## Open the notebooks in JupyterLab (installed into the venv on first use), at the repo root
	$(VENV)/bin/jupyter lab --notebook-dir="$(CURDIR)" --ServerApp.root_dir="$(CURDIR)"

$(LAB_STAMP): $(STAMP)
	$(VPY) -m pip install -e ".[lab]"
	@touch $@

bench: install ## Run the ensemble benchmark (bench/ensemble.py)
	$(VPY) -m lmc_core bench ensemble

test-colab: $(DEV_STAMP) ## Colab install path, offline: fresh venv with another torch, a lone notebook copy, smoke profile (slow, large)
	LMC_COLAB_INSTALL_TEST=1 $(VPY) -m pytest -q tests/notebooks/test_colab_install.py

clean: ## Remove generated reports and smoke figures
	rm -rf reports figures/smoke

distclean: clean ## Also remove the venv and runs/
	rm -rf $(VENV) runs
