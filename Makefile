# gpumarket: one entry point for build, test and demo. A fresh clone needs only
# `make test` or `make demo`: every target that needs the virtualenv builds it first.

PYTHON ?= python3
VENV   ?= .venv

BIN   := $(VENV)/bin
APE   := $(BIN)/ape
STAMP := $(VENV)/.installed

# Run tools with the venv first on PATH (ape may spawn helpers), anvil from npm when it is
# installed (only the foundry network needs it), and podman with the project's containers.conf
# (deploy/podman: ulimits and runc that every machine here accepts).
ANVIL_BIN := $(CURDIR)/node_modules/@foundry-rs/anvil-linux-amd64/bin
# Silence one warning that ape's pydantic-settings prints on every start (not ours to fix).
RUN := env PATH="$(abspath $(BIN)):$(ANVIL_BIN):$$PATH" CONTAINERS_CONF="$(CURDIR)/deploy/podman/containers.conf" PYTHONWARNINGS="ignore:Field 'import_remapping' has an incomplete definition"

.DEFAULT_GOAL := help

.PHONY: help venv lock artifacts anvil containers browser test test-flows test-scripts test-ray lint test-soak test-torch test-packaging fuzz compile demo devnet soak walkthrough bench-gas bench-market clean distclean

help:
	@echo "make test       run the test suite but the flows, the scripts, the cluster, the small fault soak and the packaging test (bootstraps $(VENV) first)"
	@echo "make test-flows the market's flows end to end: demo, devnet, oracles and providers as services on a chain (about 10 minutes)"
	@echo "make test-scripts run the ape scripts' tests (tests/scripts: about 6 minutes)"
	@echo "make lint       ruff (lint, format) and mypy"
	@echo "make test-soak  run the small fault soak and the market benchmark's 3-job run (tests marked soak: about 4 minutes)"
	@echo "make test-torch install the optional gpu extra (torch) into $(VENV) and run the torch tests"
	@echo "make test-ray   the Ray cluster runtime's tests on a local multi-node cluster (tests marked ray)"
	@echo "make test-packaging  install the core package alone into a fresh venv and check it (tests marked packaging)"
	@echo "make demo       the whole market on an embedded chain: 3 oracles, 3 providers (one lazy), real jobs"
	@echo "make devnet     the same story on anvil, every oracle, provider and the client its own process"
	@echo "make soak       fault soak: 200 jobs on anvil, CPUs saturated, agents/oracles/node killed (bench/soak.json)"
	@echo "make walkthrough one job walked through every contract call (ape, embedded chain)"
	@echo "make fuzz       stateful/property fuzz tests (tests/fuzz), thorough profile"
	@echo "make compile    compile the contracts (ape compile)"
	@echo "make artifacts  rebuild the contracts' ABI and bytecode the package ships (after changing contracts/)"
	@echo "make bench-gas  gas benchmark (python -m bench.gas)"
	@echo "make bench-market the whole market on this machine at 10, 100 and 1,000 concurrent jobs (bench/market.json, .png; hours on 2 cores)"
	@echo "make venv       create $(VENV) and install the project with its dev, demo and ray extras, as $(LOCK) pins them"
	@echo "make lock       re-resolve $(LOCK) from pyproject.toml (UPGRADE=1: newest versions within the ranges)"
	@echo "make anvil      install anvil (local node) from the npm registry into ./node_modules, if npm exists"
	@echo "make containers install podman, runc, catatonit, mmdebstrap and docker-registry (Debian, as root), if missing"
	@echo "make browser    install chromium and chromedriver (Debian, as root), if missing: the dashboard's browser tests"
	@echo "make clean      remove build outputs and caches (keeps $(VENV)); distclean removes it too"

venv: $(STAMP)

# pyproject.toml gives ranges; $(LOCK) the exact versions of everything `make venv` installs: the
# core, the dev extra (tests, ape, vyper), the demo extra (the embedded chain) and the ray extra (the
# cluster runtime and its tests), passed to pip as
# constraints. One pip call for the project and all its dependencies, so the resolver settles on
# packaging 23.x (eth-ape needs <24). Re-runs are instant until pyproject.toml or the lock changes.
LOCK := requirements.lock
DEV_EXTRAS := .[dev,demo,ray]

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -c $(LOCK) -e '$(DEV_EXTRAS)'
	$(BIN)/python -m pip check
	touch $@

# The lock is resolved in a throwaway venv, so it holds exactly what the project needs (nothing
# installed by hand). By default the current lock's versions are kept and a new dependency gets
# the newest in its range; UPGRADE=1 takes the newest of everything within the ranges. The gpu
# extra is not locked: a GPU machine brings its own torch build. Then `make test`, and commit.
LOCK_VENV := .cache/lock-venv

lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --disable-pip-version-check $(if $(UPGRADE),,-c $(LOCK)) -e '$(DEV_EXTRAS)'
	$(LOCK_VENV)/bin/python -m pip check
	{ echo "# The exact set \`make venv\` and CI install (as pip constraints): \`make lock\` regenerates it"; \
	  echo "# from pyproject.toml's ranges; see the Makefile."; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable --exclude pip --exclude setuptools; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf $(LOCK_VENV)

# The contracts' ABI and bytecode ship with the package (gpumarket/chain/compiled), so the
# services never compile; tests/chain/test_artifacts.py fails while they differ from contracts/.
artifacts: venv
	$(RUN) $(BIN)/python -m gpumarket.chain.artifacts

# ape caches compiled contracts by the hash of each compiled source, and modules/ is
# excluded from compilation, so a change to a module alone would leave a stale
# GpuMarket in .build: rebuild whenever any contract source is newer than the build.
CONTRACT_SOURCES := $(shell find contracts -name '*.vy' -o -name '*.vyi')
BUILD_STAMP := .build/.sources-stamp

$(BUILD_STAMP): $(CONTRACT_SOURCES) $(STAMP)
	rm -rf .build
	$(RUN) $(APE) compile
	touch $@

# anvil, the local node of devnet and the chain tests, comes from the npm registry. Without
# npm this prints why and goes on: the tests that need anvil skip, saying so.
ANVIL_NPM_PACKAGE := @foundry-rs/anvil-linux-amd64@1.7.1

anvil:
	@if [ -x "$(ANVIL_BIN)/anvil" ]; then :; \
	elif command -v npm >/dev/null 2>&1; then \
		npm install --no-save --no-audit --no-fund $(ANVIL_NPM_PACKAGE) && "$(ANVIL_BIN)/anvil" --version; \
	else echo "anvil: npm not found, so $(ANVIL_NPM_PACKAGE) is not installed; tests that need anvil will skip"; fi

# Job containers (podman with runc, catatonit for --init, mmdebstrap to build the tests' Python
# image, docker-registry for a registry on loopback) come from Debian's packages. Without root or
# apt-get this prints why and goes on: the container tests then skip, saying so. Each package
# is named after its program (catatonit's lies in /usr/libexec/podman).
CONTAINER_PACKAGES := podman runc catatonit mmdebstrap docker-registry

containers:
	@missing=""; \
	for tool in $(CONTAINER_PACKAGES); do \
		command -v $$tool >/dev/null 2>&1 || [ -x /usr/libexec/podman/$$tool ] || missing="$$missing $$tool"; \
	done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "containers: installing$$missing from Debian's packages"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(CONTAINER_PACKAGES) >/dev/null \
		|| { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(CONTAINER_PACKAGES) >/dev/null; }; \
	else echo "containers:$$missing missing and not installable here (needs root and apt-get); container tests will skip"; fi

# The dashboard's browser tests (tests/dashboard) drive a real headless Chromium through its
# chromedriver, both Debian's packages, never a browser downloaded at run time. Without root or
# apt-get this prints why and goes on: the browser tests then skip, saying so.
BROWSER_PACKAGES := chromium chromium-driver

browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "browser: installing $(BROWSER_PACKAGES) from Debian's packages"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(BROWSER_PACKAGES) >/dev/null \
		|| { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(BROWSER_PACKAGES) >/dev/null; }; \
	else echo "browser: chromium or chromedriver missing and not installable here (needs root and apt-get); browser tests will skip"; fi

# The small fault soak (marker `soak`, minutes of a saturated machine), the packaging test
# (marker `packaging`, a venv installed from scratch) and the market's flows end to end (FLOW_SUITES:
# whole markets of oracles, providers and clients as real services on a real chain, the demo and
# devnet among them) have their own targets, so `make test` stays within 15 minutes on 2 cores;
# .ci/run calls them all.
FLOW_SUITES := tests/demo tests/oracle_service tests/oracle_chain tests/provider_chain
TEST_MARKERS := -m "not soak and not packaging and not ray"

test: venv $(BUILD_STAMP) anvil containers browser
	GPUMARKET_HYPOTHESIS_PROFILE=quick $(RUN) $(APE) test tests -q $(TEST_MARKERS) --ignore=tests/scripts $(FLOW_SUITES:%=--ignore=%)

test-flows: venv $(BUILD_STAMP) anvil containers
	GPUMARKET_HYPOTHESIS_PROFILE=quick $(RUN) $(APE) test $(FLOW_SUITES) -q $(TEST_MARKERS)

# The ape scripts' tests (tests/scripts: each runs `ape run <script>` as a developer does, half a
# minute apiece) have their own target, for the same reason.
test-scripts: venv $(BUILD_STAMP) anvil
	GPUMARKET_HYPOTHESIS_PROFILE=quick $(RUN) $(APE) test tests/scripts -q

# The cluster runtime's tests (marker `ray`): a real multi-node Ray cluster on this machine (a head
# and two worker nodes declaring GPUs), started once for the session; the ray extra comes with
# `make venv`.
test-ray: venv anvil containers
	GPUMARKET_HYPOTHESIS_PROFILE=quick $(RUN) $(BIN)/python -m pytest tests/cluster -q -m ray

# ruff (lint and format) over the Python and mypy over the package (configured in pyproject.toml).
lint: venv
	$(BIN)/ruff check offchain tests bench scripts
	$(BIN)/ruff format --check offchain tests bench scripts
	$(BIN)/mypy

test-soak: venv $(BUILD_STAMP) anvil
	GPUMARKET_HYPOTHESIS_PROFILE=quick $(RUN) $(APE) test tests/soak tests/marketbench -q -m soak

# torch is the optional `gpu` extra: `make test` never downloads it (the torch tests skip,
# saying why); this target installs it (a GPU machine brings its own CUDA build) and runs them.
GPU_STAMP := $(VENV)/.installed-gpu

$(GPU_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --disable-pip-version-check -c $(LOCK) -e '.[gpu]'
	touch $@

test-torch: $(GPU_STAMP)
	GPUMARKET_HYPOTHESIS_PROFILE=quick $(RUN) $(APE) test tests/offchain/measure -q -m torch -rs

# `pip install gpumarket` with no extra, into a fresh venv under a temporary folder (a minute or
# two): none of the dev or demo packages come along, and the operators' commands run (a market
# deploys from it on anvil).
test-packaging: venv anvil
	$(RUN) $(BIN)/python -m pytest tests/packaging -q -m packaging

fuzz: venv $(BUILD_STAMP)
	GPUMARKET_HYPOTHESIS_PROFILE=thorough $(RUN) $(APE) test tests/fuzz -q

compile: venv $(BUILD_STAMP)

# The services load the contracts the package ships (gpumarket.chain.artifacts), so the demo
# needs no ape build; the walkthrough is an ape script and does.
demo: venv
	$(RUN) $(BIN)/gpumarket demo

devnet: venv anvil
	$(RUN) $(BIN)/gpumarket devnet

# The fault soak (docs/auditor.md): exits 1 on an honest provider slashed or turned away, a stuck
# payment or books that do not balance.
soak: venv anvil
	$(RUN) $(BIN)/gpumarket soak --jobs 200 --out bench/soak.json

walkthrough: venv $(BUILD_STAMP)
	$(RUN) $(APE) run walkthrough

bench-gas: venv $(BUILD_STAMP)
	$(RUN) $(BIN)/python -m bench.gas

# The whole market on this machine under load (gpumarket.marketbench; docs/ARCHITECTURE.md, "The
# market under load"): anvil, three oracle processes, simulated agents, 10, 100 and 1,000 jobs at once,
# unbatched and batched. The services load the shipped contracts: no ape build needed.
BENCH_MARKET_JOBS ?= 10,100,1000

bench-market: venv anvil
	$(RUN) $(BIN)/gpumarket bench market --jobs $(BENCH_MARKET_JOBS) --out-dir bench

clean:
	rm -rf .build .cache .hypothesis .pytest_cache build offchain/*.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
