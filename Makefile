# Two commands for a new machine: `make demo` and `make test`.
# An existing virtual environment is reused: set VENV=/path/to/venv to point at yours.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.gsag-installed

.PHONY: demo test test-slow test-min test-min-ci lint format clean

# Each step says what it does first: the install is quiet (pip -q) and takes minutes.
$(PY):
	@echo "make: creating the virtual environment $(VENV) with $(PYTHON) ..."
	$(PYTHON) -m venv $(VENV)
	@echo "make: upgrading pip in $(VENV) ..."
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	@echo "make: installing gsag and what it needs into $(VENV): torch (with its CUDA libraries"
	@echo "      from PyPI: several GB, about 6 GB installed), torchvision, timm, the test tools;"
	@echo "      a few minutes the first time, with no output unless something fails"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)
	@echo "make: installed gsag into $(VENV)"

# --resume: a second `make demo` reuses the finished run (evaluates it and rewrites the report)
demo: $(STAMP)
	@echo "make: running the demo (gsag demo --resume): data, training, evaluation, report ..."
	$(PY) -m gsag demo --resume

# lint (ruff, then mypy on gsag/ as configured in pyproject.toml), then the default suite
test: lint
	@echo "make: the default test suite (pytest -m 'not slow'): a few minutes on 2 cores ..."
	$(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m "slow" || [ $$? -eq 5 ]  # 5 = no slow test selected

# the default suite (or the tests in MIN_TESTS) at the oldest torch and torchvision
# pyproject.toml allows (their newest patch releases: torch 2.4.1 with Triton 3.0.0, torchvision
# 0.19.1; a CUDA build of torch from PyPI, several GB), in a venv of its own; the pins are read
# from pyproject.toml, nowhere else. There, a `.pt2` export takes only heights and widths that are
# multiples of 8 (torch < 2.5), and Triton 3.0's interpreter tests skip with numpy 2.
MIN_VENV ?= .venv-min
MIN_TESTS ?= tests
MIN_PINS := $(shell sed -n 's/^ *"\(torch\|torchvision\)>=\([0-9.]*\)",/\1==\2.*/p' pyproject.toml)
test-min:
	test -x $(MIN_VENV)/bin/python || $(PYTHON) -m venv $(MIN_VENV)
	printf '%s\n' $(MIN_PINS) > $(MIN_VENV)/constraints.txt
	$(MIN_VENV)/bin/python -m pip install -q -c $(MIN_VENV)/constraints.txt -e ".[test]"
	$(MIN_VENV)/bin/python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	$(MIN_VENV)/bin/python -m pytest -q -m "not slow" -p no:cacheprovider $(MIN_TESTS)

# what CI (.ci/run) runs at the minimum: the tests of code that calls version-sensitive torch
# and torchvision APIs (models, SDPA, local attention, export, training and evaluation, data
# transforms, bench, predict, losses, metrics, gpu), not the config, CLI-wording, docs and
# statistics tests (pure Python, two thirds of the test count). Measured 2026-11-29 at torch
# 2.4.1 on a shared 2-core CPU under load: the whole default suite 20 min, this subset 10 min,
# creating .venv-min and installing into it 7 min; CI took ~47 of its 90 min before.
MIN_CI_TESTS := tests/models tests/engine tests/data tests/test_export.py tests/test_bench.py \
	tests/test_predict.py tests/test_losses.py tests/test_metrics.py tests/test_gpu.py
test-min-ci: MIN_TESTS = $(MIN_CI_TESTS)
test-min-ci: test-min

lint: $(STAMP)
	@echo "make: lint (ruff check, ruff format --check, mypy) ..."
	$(PY) -m ruff check gsag tests
	$(PY) -m ruff format --check gsag tests
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff format gsag tests
	$(PY) -m ruff check --fix gsag tests

clean:
	rm -rf runs reports .pytest_cache .ruff_cache .mypy_cache .venv-min
