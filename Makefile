# mlrobust: `make book` and `make test` do all set-up on a fresh machine (python3 >= 3.10,
# make and access to the package registry). See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mlrobust-env-$(notdir $(PYTHON))
# never let uv fetch an interpreter: use the python3 this machine has
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

CHAPTER ?=
DATASET ?=
DATA_ROOT ?=
DEVICE ?=
WEIGHTS ?=
SCALE ?= full
CELL_TIMEOUT ?=
# extra options for `make lab`, e.g. LAB_ARGS="--ip 0.0.0.0 --no-browser" in a container
LAB_ARGS ?=
# JupyterLab refuses to run as root unless told: a root user (a container) gets --allow-root
LAB_ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: help env book check-book test test-oldest lab full bench pretrain refresh clean

help:
	@echo "make book     set up, execute the chapters that changed (quick scale), build _build/html"
	@echo "make check-book  build the HTML from the committed notebooks (no execution), check every page"
	@echo "              for what a reader sees (code over 88 columns, stray outputs, clipped equations, ...)"
	@echo "              and take a screenshot of each page into _build/screenshots/ (needs chromium)"
	@echo "make test     set up, run all tests (unit, property, integration, nbval)"
	@echo "make lab      open the chapters in JupyterLab (as root: --allow-root is added; LAB_ARGS=... for more)"
	@echo "make full CHAPTER=ch01_problem DATASET=coco DATA_ROOT=/data/coco [WEIGHTS=resnet101.safetensors]"
	@echo "              run a chapter at full scale (SCALE=smoke: a seconds-long check of the same path;"
	@echo "              CELL_TIMEOUT=seconds per cell, default none at full scale, 300 s at smoke)"
	@echo "make bench    write the performance record (training, inference, loading, method ratios) to _build/bench.md"
	@echo "make pretrain rebuild the shipped pretrained backbone on the CPU and check it is bit-identical"
	@echo "make refresh  re-execute the committed chapters in place (a deliberate step)"
	@echo "make test-oldest  unit tests against the oldest versions pyproject.toml allows (torch 2.4, ...)"

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras --python $(PYTHON)
	$(PY) -m ipykernel install --sys-prefix --name mlrobust --display-name "Python (mlrobust)" > /dev/null
	touch $@

env: $(STAMP)

book: env
	MLROBUST_PROGRESS=0 $(PY) tools/build_book.py $(if $(CELL_TIMEOUT),--cell-timeout $(CELL_TIMEOUT))

# The rendered pages: tools/check_book.py (tests/test_rendered_book.py runs the same checks).
check-book: env
	$(PY) tools/check_book.py

test: env
	MLROBUST_PROGRESS=0 $(PY) -m pytest

# The package's floor (torch>=2.4, numpy>=1.24, ...) in a side environment; notebooks excluded.
test-oldest: | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) .venv-oldest
	$(UV) pip install --quiet --python .venv-oldest/bin/python --resolution lowest-direct -e ".[test]" "numpy<2"
	MLROBUST_PROGRESS=0 .venv-oldest/bin/python -m pytest -p no:nbval -o addopts="" --ignore=tests/test_book.py \
		--ignore=tests/test_chapters_on_datasets.py tests

lab: env
	$(VENV)/bin/jupyter lab $(LAB_ROOT_FLAG) $(LAB_ARGS) book/

full: env
	@test -n "$(CHAPTER)" || { echo "usage: make full CHAPTER=<name> [DATASET=coco DATA_ROOT=/path DEVICE=cuda WEIGHTS=file SCALE=full|smoke]"; exit 2; }
	MLROBUST_PROGRESS=0 $(PY) tools/build_book.py --scale $(SCALE) --chapter $(CHAPTER) --dataset "$(DATASET)" \
		--data-root "$(DATA_ROOT)" --device "$(DEVICE)" --weights "$(WEIGHTS)" $(if $(CELL_TIMEOUT),--cell-timeout $(CELL_TIMEOUT))

bench: env
	mkdir -p _build
	$(PY) -m mlrobust bench --output _build/bench.md

pretrain: env
	MLROBUST_PROGRESS=0 $(PY) -m mlrobust pretrain

refresh: env
	MLROBUST_PROGRESS=0 $(PY) tools/build_book.py --in-place $(if $(CELL_TIMEOUT),--cell-timeout $(CELL_TIMEOUT))

clean:
	rm -rf _build
