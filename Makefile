# Every target creates .venv on first use, so each works as the only command on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install system-deps lint format baseline test test-all bench gpu-wheels gpu-check clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: $(STAMP) ## Create .venv with the kit and its test tools (only that)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

system-deps: ## OS packages for the sandbox and browser tests (bubblewrap, chromium), when missing and possible
	@bash .ci/system-deps

baseline: install system-deps ## Build data, original model and reference pool, score every baseline, print the leaderboard
	$(BIN)/challenge baseline

lint: install ## ruff: lint and layout (pyproject.toml's [tool.ruff]); `make format` fixes what it can
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## Lay the code out as `make lint` wants it (ruff format, import order)
	$(BIN)/ruff check --select I --fix .
	$(BIN)/ruff format .

test: install system-deps lint ## Lint, then run the test suite (slow end-to-end tests excluded)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: install system-deps lint ## Lint, then run every test, slow ones included
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install ## Print speed and memory figures (metric, training, data path, fresh runs, sandbox)
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

GPU_WHEELS := benchmarks/gpu_wheels
gpu-wheels: install ## What benchmarks/gpu_check.sh installs on a GPU machine without a registry: pure-Python wheels and bubblewrap, unpacked
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)/wheels $(GPU_WHEELS)/deb $(GPU_WHEELS)/root
	$(BIN)/pip wheel --quiet --no-deps -w $(GPU_WHEELS)/wheels $$($(BIN)/pip list --format=freeze 2>/dev/null | grep -iE '^(hydra-core|omegaconf|antlr4-python3-runtime)==')
	cd $(GPU_WHEELS)/deb && apt-get download bubblewrap libcap2 libselinux1 libpcre2-8-0
	for d in $(GPU_WHEELS)/deb/*.deb; do dpkg -x $$d $(GPU_WHEELS)/root; done
	@du -sh $(GPU_WHEELS)

gpu-check: ## The GPU check (benchmarks/gpu_check.sh): on a machine with a GPU, or the CPU variant without one
	bash benchmarks/gpu_check.sh

clean: ## Remove generated data, pools, run folders (keeps .venv)
	rm -rf .cache outputs multirun wandb lightning_logs
