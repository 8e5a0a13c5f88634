# Build the book and run every test. The README's two commands:
#   make book   -> _build/html/index.html
#   make test   -> unit tests, every chapter notebook, the book build, the browser tests
# Both create .venv on first use (Python 3.11 and pip are all they need).
#
# PyTorch is installed first, on its own, so that the build you want is the one you get:
#   make book TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"    # CPU build
#   make book TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cu128"  # CUDA 12.8
# With TORCH_PIP_ARGS empty pip asks its configured index (PyPI, or a local wheel where one is set up).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON        ?= python3
VENV          ?= .venv
LOCK          := requirements.lock
# PyTorch's release is the one the lock records (`make lock TORCH_VERSION=...` changes it).
TORCH_VERSION ?= $(shell sed -n 's/^torch==\([0-9][^ ;\\]*\).*/\1/p' $(LOCK))
UV_VERSION    ?= 0.13.9
LATEST_VENV   ?= .venv-latest
TORCH_PIP_ARGS ?=
NB_TIMEOUT    ?= 300
PYTEST_ARGS   ?=

BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
# Chapter notebooks (the paired .ipynb files) and the MyST chapters that are jupytext notebooks.
NOTEBOOKS = $(wildcard book/*.ipynb)

# Front-end files the built HTML loads from CDNs; the browser tests serve local copies instead.
VENDOR_DIR  := tests/browser/vendor
VENDOR_PKGS := mathjax@3.2.2 requirejs@2.3.4 @jupyter-widgets/html-manager@1.0.6
VENDOR_STAMP := $(VENDOR_DIR)/.installed

# Real-data chapters read $BENIGN_ATTENTION_DATA; beside a checkout (CI, this workplace) the data
# lives in ../shared/data. Elsewhere the loaders download into a user cache.
SHARED_DATA := $(abspath $(CURDIR)/../shared/data)
ifneq ($(wildcard $(SHARED_DATA)),)
export BENIGN_ATTENTION_DATA ?= $(SHARED_DATA)
endif

# Every tool runs from the venv; notebook kernels ("python3") resolve to the venv's python too.
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHONHASHSEED ?= 0
export PYDEVD_DISABLE_FILE_VALIDATION := 1

# Run one stage, print its wall time, keep its exit status.
define stage
	@echo "==> $(1)"; start=$$(date +%s); rc=0; $(2) || rc=$$?; \
	 echo "<== $(1): $$(( $$(date +%s) - start )) s (exit $$rc)"; \
	 echo "$(1) $$(( $$(date +%s) - start ))s exit=$$rc" >> _build/stage-times.txt 2>/dev/null || true; \
	 exit $$rc
endef

.PHONY: help venv lock test-latest vendor book test test-unit test-notebooks test-browser shots prose sync bench clean distclean

help:
	@echo "make book   build the HTML book into _build/html (index.html)"
	@echo "make test   unit tests, chapter notebooks (nbmake), book build, browser tests"
	@echo "make shots  screenshot every page of the existing _build/html (run make book first; it does not"
	@echo "            build) full length at 1280 and 390 px -> artifacts/shots/<page>-<width>.png"
	@echo "make sync   jupytext --sync every chapter (book/*.md <-> book/*.ipynb), clear notebook outputs"
	@echo "            and write colab/*.ipynb, the chapters in plain Markdown for Colab (scripts/colab.py)"
	@echo "make prose  reading figures per chapter: paragraph words, numbers per paragraph, shown/hidden code"
	@echo "make bench  run benchmarks/*.py"
	@echo "make venv   create .venv: torch first (its own build), then every package at the lock's version"
	@echo "make lock   regenerate requirements.lock, environment.yml and the chapters' Colab cell (PyPI, uv)"
	@echo "make test-latest  the tests in $(LATEST_VENV) with the newest releases the ranges allow (no lock)"
	@echo "make clean  remove build outputs (make distclean also removes .venv and vendored JS)"

venv: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@# 1. PyTorch on its own, at the lock's release, from the index TORCH_PIP_ARGS names.
	@have=$$($(PY) -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null || true); \
	 if [ "$$have" = "$(TORCH_VERSION)" ]; then echo "torch $$have already installed"; \
	 else $(PY) -m pip install "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS); fi
	@# 2. Everything else exactly as locked (hashes checked, nothing resolved), then the package.
	$(PY) -m pip install --no-deps --require-hashes -r $(LOCK)
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	@# JupyterLab from this venv saves the paired chapter notebooks without outputs (README).
	$(PY) -m benign_attention._jupyter_hooks --install-config
	@touch $@

# Refresh the lock from pyproject.toml's ranges (newest releases they allow; PyTorch stays at
# TORCH_VERSION), Binder's environment.yml and the chapters' Colab cell. Then run `make test`.
# uv goes beside the venv, not into it (the venv holds exactly the lock).
lock: venv
	$(PY) -m pip install -q --upgrade --target $(VENV)/lock-tools "uv==$(UV_VERSION)"
	PYTHONPATH=$(CURDIR)/$(VENV)/lock-tools $(PY) scripts/lock.py --torch "$(TORCH_VERSION)"
	$(PY) scripts/colab.py        # the Colab notebooks carry the chapters' new install cell

# Early warning, not part of `make test`/CI: the tests with the newest releases the ranges allow,
# resolved by pip without the lock, in $(LATEST_VENV) (PyTorch stays at the lock's release).
test-latest:
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	@# torch stays at the lock's release and build (its own index, e.g. the CPU build): without the hold,
	@# eager upgrading swaps in PyPI's newest torch, a CUDA build of several GB. Everything else goes
	@# to the newest release its range allows.
	$(LATEST_VENV)/bin/python -m pip install "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS)
	echo "torch==$(TORCH_VERSION)" > $(LATEST_VENV)/torch-held.txt
	$(LATEST_VENV)/bin/python -m pip install --upgrade --upgrade-strategy eager -c $(LATEST_VENV)/torch-held.txt \
	  -e ".[book,test,realdata]"
	$(LATEST_VENV)/bin/python -m benign_attention._jupyter_hooks --install-config
	touch $(LATEST_VENV)/.installed
	BENIGN_ATTENTION_UNLOCKED=1 $(MAKE) --no-print-directory test VENV=$(LATEST_VENV)

vendor: $(VENDOR_STAMP)

$(VENDOR_STAMP): Makefile
	@command -v npm >/dev/null || { echo "npm is needed for the browser tests (apt-get install npm)"; exit 1; }
	mkdir -p $(VENDOR_DIR)
	npm install --no-save --no-audit --no-fund --loglevel=error --prefix $(VENDOR_DIR) $(VENDOR_PKGS)
	@touch $@

book: venv
	rm -rf _build
	mkdir -p _build
	$(BIN)/jupyter-book build . -W -n --keep-going

test:
	@rm -rf _build artifacts; mkdir -p _build
	$(call stage,install (venv),$(MAKE) --no-print-directory venv)
	$(call stage,install (vendored JS),$(MAKE) --no-print-directory vendor)
	$(call stage,unit tests,$(BIN)/pytest tests -m "not browser" $(PYTEST_ARGS))
	$(call stage,chapter notebooks,$(MAKE) --no-print-directory test-notebooks)
	$(call stage,book build,$(BIN)/jupyter-book build . -W -n --keep-going)
	$(call stage,browser tests,$(BIN)/pytest tests -m browser $(PYTEST_ARGS))
	@echo "stage times:"; cat _build/stage-times.txt

test-unit: venv
	$(BIN)/pytest tests -m "not browser" $(PYTEST_ARGS)

test-notebooks: venv
	@if [ -z "$(NOTEBOOKS)" ]; then echo "no book/*.ipynb to run"; else \
	  $(BIN)/pytest --nbmake --nbmake-timeout=$(NB_TIMEOUT) -p no:cacheprovider $(NOTEBOOKS) $(PYTEST_ARGS); fi

# Needs a built book (make book) and make vendor.
test-browser: venv vendor
	$(BIN)/pytest tests -m browser $(PYTEST_ARGS)

# Screenshots of the existing build (make book first), in the browser tests' chromium with the same
# page list and local CDN copies: artifacts/shots/<page>-1280.png and <page>-390.png.
shots: venv vendor
	$(PY) -m tests.browser.shots

prose:
	@$(if $(wildcard $(PY)),$(PY),$(PYTHON)) scripts/prose.py

sync: venv
	@shopt -s nullglob; for nb in book/*.ipynb; do \
	   [ -e "$${nb%.ipynb}.md" ] || $(BIN)/jupytext --set-formats ipynb,md:myst "$$nb"; done
	@chapters="$$(grep -l '^kernelspec:' book/*.md 2>/dev/null || true)"; \
	 if [ -z "$$chapters" ]; then echo "no chapters to sync"; else $(BIN)/jupytext --sync $$chapters; fi
	@shopt -s nullglob; nbs=(book/*.ipynb); [ $${#nbs[@]} -eq 0 ] || $(PY) -m benign_attention._jupyter_hooks "$${nbs[@]}"
	@# The chapters as plain-Markdown notebooks for Colab (tests/test_colab.py fails when stale).
	$(PY) scripts/colab.py

bench: venv
	@shopt -s nullglob; files=(benchmarks/*.py); \
	 if [ $${#files[@]} -eq 0 ]; then echo "no benchmarks/*.py yet"; fi; \
	 for f in "$${files[@]}"; do echo "==> $$f"; $(PY) "$$f"; done

clean:
	rm -rf _build artifacts .pytest_cache .hypothesis
	find . \( -path ./$(VENV) -o -path ./$(VENDOR_DIR) \) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(LATEST_VENV) $(VENDOR_DIR) build dist
