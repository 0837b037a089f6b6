# txmerge: the companion book. The two commands are `make book` and `make test` (README.md);
# each creates .venv and installs what it needs on a fresh clone. `make help` lists everything.
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

# ---- variables (override on the command line: make book PRESET=smoke) -------------------------
PRESET    ?= tiny#             tiny (default, offline CPU) | smoke (seconds, tests/CI) | paper (GPU + internet)
PYTHON    ?= python3#          interpreter that creates the virtual environment
VENV      ?= .venv#            the virtual environment
PY        ?= $(VENV)/bin/python
INSTALL   ?= 1#                0 = use $(PY) as it is; never create or update the venv
UV        ?= 0.13.9#           uv version that installs uv.lock (make venv) and refreshes it (make lock)
EXTRAS    ?= book,test,classroom
TORCH_INDEX ?= auto#           Linux: auto = torch's CPU build (PyTorch's CPU index when reachable); empty = the lock's PyPI torch (CUDA)
NOTEBOOKS ?= notebooks#        chapter sources, notebooks/<stem>.md (Jupytext MyST)
EXECUTED  ?= executed#         papermill outputs, executed/<stem>.ipynb (the toc points here)
BUILD     ?= _build#           Jupyter Book output; the HTML is $(BUILD)/html
NAME      ?=#                  chapter stem for `make chapter`
JOBS      ?= 2#                chapters executed side by side by make book, one thread each (two single-thread
#                              processes gave 1.35x the throughput of one two-thread process on a 2-core CPU)
TEST_JOBS ?= 2#                pytest-xdist workers of make test (the smoke-book tests share one)
PAPERMILL_FLAGS ?= --log-level WARNING
JB_FLAGS  ?= -W --keep-going

export TXMERGE_CACHE     ?= $(CURDIR)/.cache/results
export TXMERGE_DOWNLOADS ?= $(CURDIR)/.cache/downloads
export TXMERGE_FIGURES   := $(EXECUTED)/figures
export TXMERGE_ESTIMATES := $(EXECUTED)/estimates
# reproducible output stamps, dated by the last commit (Sphinx also uses it for the copyright year)
export SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)
# the kernel must choose matplotlib's inline backend itself, or figures would not be shown
unexport MPLBACKEND
# papermill warns that stdin ("-") has no file extension; that is how we feed it.
export PYTHONWARNINGS    ?= ignore::UserWarning:papermill.iorw

BIN        := $(if $(findstring /,$(PY)),$(dir $(PY)))
CHAPTERS   := $(sort $(basename $(notdir $(wildcard $(NOTEBOOKS)/*.md))))
NOTEBOOKS_OUT := $(CHAPTERS:%=$(EXECUTED)/%.ipynb)
PARAMS_DIR := $(EXECUTED)/.params
LIB_SOURCES := $(shell find lib/txmerge -type f \( -name '*.py' -o -name '*.json' -o -name '*.yaml' \) -not -path '*/__pycache__/*' 2>/dev/null)
ENV_STAMP  := $(if $(filter 1,$(INSTALL)),$(VENV)/.installed)
BUILD_PARENT := $(patsubst %/,%,$(dir $(BUILD)))

.PHONY: help book notebooks chapter params test test-fast bench clean distclean venv lock assignments browser prefetch FORCE

help: ## show this help
	@echo "txmerge companion book"
	@echo
	@echo "  make book     execute every chapter with PRESET=$(PRESET) and build the HTML book ($(BUILD)/html/index.html)"
	@echo "  make test     the whole test suite (unit tests, smoke book build, browser check)"
	@echo
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo
	@echo "Variables (current value):"
	@echo "  PRESET=$(PRESET)  tiny | smoke | paper (paper needs internet and, in practice, a GPU)"
	@echo "  NAME=$(NAME)  chapter stem for 'make chapter' (one of: $(CHAPTERS))"
	@echo "  EXECUTED=$(EXECUTED)  BUILD=$(BUILD)  VENV=$(VENV)  PY=$(PY)  INSTALL=$(INSTALL)"
	@echo "  TXMERGE_CACHE=$(TXMERGE_CACHE)"
	@echo "  TXMERGE_DOWNLOADS=$(TXMERGE_DOWNLOADS)"

# ---- the virtual environment ------------------------------------------------------------------
# Installed from uv.lock (every package pinned with its hashes; Linux, macOS, Windows) by uv, which
# `pip` puts into the environment first. On Linux torch comes as its CPU build (tools/install_locked.py).
venv: $(ENV_STAMP) ## create/update the virtual environment .venv from uv.lock

$(VENV)/.installed: pyproject.toml uv.lock tools/install_locked.py
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV)"
	$(VENV)/bin/python tools/install_locked.py $(VENV)/bin/python --extras $(EXTRAS) \
	  --torch-index $(if $(TORCH_INDEX),$(TORCH_INDEX),pypi)
	@touch $@

lock: ## refresh uv.lock from pyproject.toml (resolves on PyPI); the next make reinstalls from it
	@test -x $(VENV)/bin/uv || { test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV); \
	  $(VENV)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV)"; }
	$(VENV)/bin/uv lock
	@echo "==> uv.lock $$(sha256sum uv.lock 2>/dev/null | cut -c1-12 || shasum -a 256 uv.lock | cut -c1-12); commit it with pyproject.toml"

# ---- parameters: validated for every chapter before any work ----------------------------------
# Rewrites $(PARAMS_DIR)/<stem>.yaml only when its content changes, so a chapter re-executes when
# its parameters (or the preset) change, and not otherwise.
params: $(ENV_STAMP) ## validate PRESET for every chapter (writes executed/.params/*.yaml)
	@$(PY) -m txmerge.chapters.params --preset $(PRESET) --write-dir $(PARAMS_DIR) --chapters $(CHAPTERS)

$(PARAMS_DIR)/%.yaml: params ;
.PRECIOUS: $(PARAMS_DIR)/%.yaml

# ---- chapters: notebooks/<stem>.md --jupytext--> papermill --> executed/<stem>.ipynb ----------
# Written under a temporary name and moved into place only on success: a failed chapter leaves no
# executed notebook (the old one is removed first).
$(EXECUTED)/%.ipynb: $(NOTEBOOKS)/%.md $(PARAMS_DIR)/%.yaml $(LIB_SOURCES) matplotlibrc | $(ENV_STAMP)
	@mkdir -p $(@D)
	@rm -f $@
	@echo "==> executing chapter $* (preset $(PRESET))"
	@set -o pipefail; tmp="$(@D)/.tmp.$*.ipynb"; rm -f "$$tmp"; start=$$(date +%s); \
	if $(PY) -m jupytext --quiet --to ipynb -o - $< \
	   | $(PY) -m papermill - "$$tmp" -f $(PARAMS_DIR)/$*.yaml -k python3 --cwd . $(PAPERMILL_FLAGS); then \
	  mv -f "$$tmp" $@; echo "    chapter $* done in $$(( $$(date +%s) - start )) s"; \
	else \
	  rm -f "$$tmp"; echo "error: chapter $* failed with PRESET=$(PRESET) (traceback above); no executed notebook was kept." >&2; exit 1; \
	fi

# the results page reads the estimates that the chapters with claims record (txmerge.experiments.estimates)
$(EXECUTED)/08_results.ipynb: $(patsubst %,$(EXECUTED)/%.ipynb,02_ffn_attention 03_attention_heads 04_residual 05_data_amount 06_glue)

# under -j make starts chapters in this order: the long GLUE chapter first, beside the MLM chapters
ORDERED_OUT := $(filter %/06_glue.ipynb,$(NOTEBOOKS_OUT)) $(filter-out %/06_glue.ipynb,$(NOTEBOOKS_OUT))

notebooks: $(ORDERED_OUT) ## execute every chapter (no HTML)

chapter: ## execute one chapter: make chapter NAME=<stem> [PRESET=...]
	@if [ -z "$(filter $(NAME),$(CHAPTERS))" ] || [ -z "$(NAME)" ]; then \
	  echo "error: unknown chapter NAME='$(NAME)'; choose one of: $(CHAPTERS)." >&2; exit 2; fi
	@$(MAKE) --no-print-directory $(EXECUTED)/$(NAME).ipynb

# ---- the book -----------------------------------------------------------------------------------
book: | $(ENV_STAMP) ## execute changed chapters (JOBS at a time), then build the HTML (strict)
	@if [ "$(EXECUTED)" != executed ]; then \
	  echo "error: make book needs EXECUTED=executed (the toc points there); build a copy of the repository instead." >&2; exit 2; fi
	@if [ "$(notdir $(BUILD))" != _build ]; then \
	  echo "error: BUILD must end in /_build (Jupyter Book appends _build to its output path)." >&2; exit 2; fi
	@$(if $(filter 1,$(JOBS)),,OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} )$(MAKE) --no-print-directory -j$(JOBS) notebooks
	@# pages that {glue} other chapters' outputs: Sphinx does not see that dependency, so mark them changed
	@for page in $$(grep -l '{glue' book/*.md); do touch "$$page"; done
	$(BIN)jupyter-book build . $(JB_FLAGS) --path-output $(BUILD_PARENT)
	@echo "==> open $(BUILD)/html/index.html"

# ---- the paper preset on machines without internet ----------------------------------------------
prefetch: $(ENV_STAMP) ## download what PRESET takes from the Hugging Face Hub into HF_HOME (then run with HF_HUB_OFFLINE=1)
	$(PY) -m txmerge prefetch --preset $(PRESET)

# ---- classroom material ------------------------------------------------------------------------
assignments: $(ENV_STAMP) ## nbgrader course in assignments/: teacher notebook, student copy (release/), autograder tests
	$(PY) -m classroom make --course assignments

# ---- tests and benchmarks ----------------------------------------------------------------------
test: $(ENV_STAMP) ## run the whole test suite (includes the smoke book build and the browser test)
	$(BIN)ruff check lib tests classroom tools bench
	@chromium="$$($(PY) tools/browser.py)"; TXMERGE_CHROMIUM="$$chromium" $(PY) -m pytest -n $(TEST_JOBS) --dist loadgroup

browser: $(ENV_STAMP) ## find or install the Chromium of the browser test (make test does this itself)
	$(PY) tools/browser.py

test-fast: $(ENV_STAMP) ## run the tests not marked slow
	$(PY) -m pytest -n $(TEST_JOBS) -m "not slow"

bench: $(ENV_STAMP) ## time a cold and a warm `make book` for PRESET (budget: 20 min / 1 min for tiny)
	$(PY) bench/bench_book.py --preset $(PRESET)

# ---- cleaning -----------------------------------------------------------------------------------
clean: ## remove executed notebooks, the HTML and cached results (keeps downloads and .venv)
	rm -rf $(EXECUTED) $(BUILD) $(TXMERGE_CACHE)

distclean: clean ## also remove downloads and the virtual environment
	rm -rf $(TXMERGE_DOWNLOADS) $(VENV)
