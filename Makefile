# Two commands from a fresh clone: `make demo` and `make test`.
# Each builds its own virtual environment in .venv. torch is pinned to the CPU wheel that
# these machines keep on disk; an unpinned torch would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.mixvi-installed

.PHONY: demo test docs lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mixvi train --model vae --out demo_out --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest tests

# The site, with warnings as errors; notebooks are rendered with their committed outputs.
docs: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[docs]"
	rm -rf docs/_build docs/generated
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet ruff
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) demo_out docs/_build docs/generated
