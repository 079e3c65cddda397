# Two commands from a fresh clone: `make demo` and `make test`.
# Each builds its own virtual environment in .venv. torch is pinned to the CPU wheel that
# these machines keep on disk; an unpinned torch would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.mixvi-installed

# `make test-latest`: the suite on the stack a new environment gets today (Python 3.12, the
# newest scvi-tools 1.5.x, anndata, pandas 3, scanpy), in its own .venv-latest. On Python
# 3.12 PyPI's torch is the CUDA build (about 5 GB in the venv; it runs on a CPU too).
# It also takes the `bench` extra (scib-metrics, with jax), so that the conditional benchmark's
# scib scores are tested there and its scikit-learn fallback in `make test`.
PYTHON_LATEST ?= python3.12
PYENV_LATEST ?= 3.12.1
LATEST_VENV ?= .venv-latest
LATEST_STAMP := $(LATEST_VENV)/.mixvi-installed

.PHONY: demo test test-latest docs lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# The GMVAE on real counts, 10x PBMC 3k (fetched once into ~/.cache/mixvi): latent, clusters
# and their scores next to PCA + Leiden, PCA + k-means and scVI + Leiden on the same cells.
# Every setting is the library's default for counts, bar the epochs.
demo: $(STAMP)
	$(BIN)/mixvi train --model gmvae --dataset pbmc3k --n-components 8 --epochs 100 \
	  --scvi-baseline --out demo_out --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -n auto tests

# PYENV_VERSION picks pyenv's 3.12 where pyenv provides python3.12; elsewhere it is ignored.
$(LATEST_STAMP): pyproject.toml
	PYENV_VERSION=$(PYENV_LATEST) $(PYTHON_LATEST) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LATEST_VENV)/bin/python -m pip install --quiet "$(TORCH_SPEC)"
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[test,bench]"
	touch $(LATEST_STAMP)

test-latest: $(LATEST_STAMP)
	$(LATEST_VENV)/bin/python -m pytest -n auto tests

# The site, with warnings as errors; notebooks are rendered with their committed outputs.
docs: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	rm -rf docs/_build docs/generated
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html
	$(BIN)/python docs/check_api_pages.py docs/_build/html

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tutorials
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) $(LATEST_VENV) demo_out docs/_build docs/generated
