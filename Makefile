# vaultbundle — developer entry points. Everything installs itself into .venv (Python 3.11).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements/operator.lock | cksum | cut -d' ' -f1)
LOCK   := requirements/operator.lock
# Supply-chain tools in a venv of their own (they pin their own pip and would disturb the project's venv).
TOOLS  := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed-pip-tools-7.6.2-pip-audit-2.10.1

.PHONY: help venv lint test test-unit test-node image demo testbed-up testbed-down testbed-status fuzz bench bench-smoke bench-peer bench-10k lock audit clean
FUZZ_SECONDS ?= 60
# NODE=1: `make testbed-up` also starts the kubelet node (containerd + runc) that runs real pods.
NODE ?=

help:
	@echo "make demo            run the demo on the local test bed"
	@echo "make test            lint, type-check and run the whole test suite (brings the test bed, its node and the image up, then down)"
	@echo "make test-unit       fast unit tests only (no test bed)"
	@echo "make testbed-up|testbed-down|testbed-status   (testbed-up NODE=1: with a kubelet node that runs pods)"
	@echo "make image           build the operator image (buildah, local Debian base) and load it into the node"
	@echo "make test-node       the chart's Deployment in real pods on the node (brings the bed up and down)"
	@echo "make fuzz            long atheris runs of every parser (FUZZ_SECONDS each)"
	@echo "make bench|bench-smoke  benchmarks on the test bed (bench/results/)"
	@echo "make bench-peer      side by side with External Secrets Operator (builds it once; N=200 1000, or N=..., SMOKE=1: N=50)"
	@echo "make bench-10k       10,000 VaultBundles, then with 10,000 unrelated Secrets (bench/results/peer-10k.*)"
	@echo "make lock            re-resolve $(LOCK) (hashed runtime closure) after changing pyproject.toml"
	@echo "make audit           pip-audit $(LOCK) against the PyPI/OSV vulnerability databases (needs them reachable)"

# The runtime closure comes from the hashed lock (what the image ships); the test tools are added on top, and
# tests/unit/test_lock.py fails if they moved any locked version.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip check
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(VENV)/bin/ruff check operator tests e2e fuzz bench requirements
	$(VENV)/bin/ruff format --check operator tests e2e fuzz bench requirements
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict --no-warn-unused-configs tests/kit tests/unit/test_reconcile*.py tests/unit/test_backoff.py \
		tests/unit/test_scheduler_backoff.py tests/unit/test_drift.py
	$(VENV)/bin/lint-imports

test-unit: venv
	$(PY) -m pytest -m "not testbed" -q

# The whole suite: lint + types, then every test against the real test bed with its kubelet node and the operator
# image (tests/e2e/test_node.py runs the chart's Deployment in real pods); the bed always goes down.
test: lint
	$(PY) -m e2e.testbed up --node && $(PY) -m e2e.testbed image && \
	  VAULTBUNDLE_REQUIRE_NODE=1 $(PY) -m pytest -q; rc=$$?; $(PY) -m e2e.testbed down; exit $$rc

# The plan line first (standard library only, before anything is installed), then everything it announces.
demo:
	@$(PYTHON) -m e2e.demo --plan
	@$(MAKE) --no-print-directory venv
	$(PY) -m e2e.testbed up
	$(PY) -m e2e.demo

testbed-up: venv
	$(PY) -m e2e.testbed up $(if $(NODE),--node)

testbed-down: venv
	$(PY) -m e2e.testbed down

testbed-status: venv
	$(PY) -m e2e.testbed status

# The operator image from the root Dockerfile, built with buildah on a local debootstrap base (no registry here);
# loaded into the node's containerd if the node runs (and by every later `make testbed-up NODE=1`).
image: venv
	$(PY) -m e2e.testbed image

# The chart's Deployment running the image on the node (tests/e2e/test_node.py); the bed always goes down.
test-node: venv
	$(PY) -m e2e.testbed up --node && $(PY) -m e2e.testbed image && \
	  VAULTBUNDLE_REQUIRE_NODE=1 $(PY) -m pytest -m node -q tests/e2e/test_node.py; rc=$$?; $(PY) -m e2e.testbed down; exit $$rc

# Benchmarks on the local test bed (not in CI): JSON + PNG in bench/results/ (latest.* / smoke.*).
bench: venv
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m e2e.testbed up
	$(PY) -m bench.run

bench-smoke: venv
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m e2e.testbed up
	$(PY) -m bench.run --smoke

# vaultbundle and External Secrets Operator one after the other on the same bed (bench/peer.py; not in CI).
# The first run builds ESO into the test-bed cache (~16 min on 2 cores, progress shown); N="200 1000 5000" to
# choose sizes, SMOKE=1 for N=50 (results in bench/results/peer-smoke.*).
N ?=
SMOKE ?=
bench-peer: venv
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m e2e.testbed up
	$(PY) -m bench.peer $(if $(SMOKE),--smoke) $(if $(N),--n $(N))

# TENK_ARGS passes options to bench.tenk, e.g. TENK_ARGS="--n 2000 --unrelated 2000 --bundles 200" (bench/README.md)
TENK_ARGS ?=
bench-10k: venv
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m e2e.testbed up
	$(PY) -m bench.tenk $(TENK_ARGS)

# Long coverage-guided fuzzing of every untrusted-input parser (not in CI): FUZZ_SECONDS per target.
fuzz: venv
	$(PY) -m pip install --quiet atheris==3.0.0
	$(PY) -m fuzz.run --all $(FUZZ_SECONDS)

$(TOOLS_STAMP):
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet pip==25.3 pip-tools==7.6.2 pip-audit==2.10.1
	touch $(TOOLS_STAMP)

lock: $(TOOLS_STAMP)
	$(TOOLS)/bin/python requirements/lock.py $(TOOLS)/bin/pip-compile

# Known vulnerabilities in the locked closure; requirements/audit-ignore.txt lists the accepted ones (reasons).
audit: $(TOOLS_STAMP)
	$(TOOLS)/bin/pip-audit --strict --progress-spinner off --require-hashes --disable-pip -r $(LOCK) \
	  $$(sed -n 's/^\([A-Za-z][A-Za-z0-9-]*\).*/--ignore-vuln \1/p' requirements/audit-ignore.txt)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
