# vaultbundle — developer entry points. Everything installs itself into .venv (Python 3.11).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: help venv lint test test-unit demo testbed-up testbed-down testbed-status fuzz bench bench-smoke clean
FUZZ_SECONDS ?= 60

help:
	@echo "make demo            run the demo on the local test bed"
	@echo "make test            lint, type-check and run the whole test suite (brings the test bed up and down)"
	@echo "make test-unit       fast unit tests only (no test bed)"
	@echo "make testbed-up|testbed-down|testbed-status"
	@echo "make fuzz            long atheris runs of every parser (FUZZ_SECONDS each)"
	@echo "make bench|bench-smoke  benchmarks on the test bed (bench/results/)"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check operator tests e2e fuzz bench
	$(VENV)/bin/ruff format --check operator tests e2e fuzz bench
	$(VENV)/bin/mypy

test-unit: venv
	$(PY) -m pytest -m "not testbed" -q

# The whole suite: lint + types, then every test against the real test bed; the bed always goes down.
test: lint
	$(PY) -m e2e.testbed up
	$(PY) -m pytest -q; rc=$$?; $(PY) -m e2e.testbed down; exit $$rc

demo: venv
	$(PY) -m e2e.testbed up
	$(PY) -m e2e.demo

testbed-up: venv
	$(PY) -m e2e.testbed up

testbed-down: venv
	$(PY) -m e2e.testbed down

testbed-status: venv
	$(PY) -m e2e.testbed status

# Benchmarks on the local test bed (not in CI): JSON + PNG in bench/results/ (latest.* / smoke.*).
bench: venv
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m e2e.testbed up
	$(PY) -m bench.run

bench-smoke: venv
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m e2e.testbed up
	$(PY) -m bench.run --smoke

# Long coverage-guided fuzzing of every untrusted-input parser (not in CI): FUZZ_SECONDS per target.
fuzz: venv
	$(PY) -m pip install --quiet atheris==3.0.0
	$(PY) -m fuzz.run --all $(FUZZ_SECONDS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
