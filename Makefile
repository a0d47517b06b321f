# lalm — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lalm-installed
# CPU wheel on machines without CUDA (2.13.0 is the local wheel on our CPU machines); on a CUDA
# machine pip's default torch build for the platform is used.
TORCH_CPU_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install system-deps demo test test-reliability test-unit test-gpu bench lint format clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install lalm with everything it needs (espeak-ng and sox too)

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "CUDA found: installing the default torch build"; $(PY) -m pip install --quiet 'torch>=2.4,<2.15'; \
	else \
		echo "no CUDA: installing the CPU wheel $(TORCH_CPU_SPEC) first"; $(PY) -m pip install --quiet '$(TORCH_CPU_SPEC)'; \
	fi
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

system-deps: ## install espeak-ng and sox (needed by the synthetic corpus) when missing; ffmpeg too where we are root (optional: MELD's MP4 clips)
	@missing=""; for tool in espeak-ng sox; do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	root=""; [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && root=1; \
	if [ -n "$$root" ] && ! command -v ffmpeg >/dev/null 2>&1; then \
		echo "installing ffmpeg with apt-get (optional)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null || true; \
	fi; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ -n "$$root" ]; then \
		echo "installing$$missing with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng sox libsndfile1 >/dev/null; \
	else \
		echo "missing:$$missing. Install them, e.g. 'sudo apt-get install -y espeak-ng sox libsndfile1' (Debian/Ubuntu)"; \
		echo "or 'brew install espeak-ng sox' (macOS), then re-run make."; exit 1; \
	fi

demo: install ## the main job: data -> pretrain -> SFT -> DPO on CPU (torchrun, 2 ranks) -> evaluation -> outputs/demo/REPORT.md
	$(PY) scripts/demo.py --output outputs/demo

test: install ## run the suite: unit, integration, distributed (torchrun, 2 gloo ranks); gpu tests skip without a GPU
	DS_ACCELERATOR=cpu OMP_NUM_THREADS=2 $(PY) -m pytest -m "not reliability" $(PYTEST_ARGS)

test-reliability: install ## kill, signal, corrupt and resume real 2-rank jobs (tests/reliability; CI runs it after make test)
	DS_ACCELERATOR=cpu OMP_NUM_THREADS=1 $(PY) -m pytest tests/reliability -m reliability $(PYTEST_ARGS)

test-unit: install ## run the fast unit tests only
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: install ## ruff lint and format check, mypy on src/
	$(VENV)/bin/ruff check src scripts data_recipes tests
	$(VENV)/bin/ruff format --check src scripts data_recipes tests
	$(VENV)/bin/mypy src

format: install ## ruff format and autofix
	$(VENV)/bin/ruff format src scripts data_recipes tests
	$(VENV)/bin/ruff check --fix src scripts data_recipes tests

clean: ## remove caches and outputs (keeps .venv)
	rm -rf .pytest_cache .ruff_cache outputs wandb build src/*.egg-info
	find . -name __pycache__ -type d -not -path './.venv/*' -prune -exec rm -rf {} +

test-gpu: install ## run the GPU tests (needs a CUDA machine)
	$(PY) -m pytest tests/gpu -m gpu $(PYTEST_ARGS)

bench: install ## CPU benchmarks: encoder on the real audio length; lalm's DPO step vs TRL's (outputs/bench/dpo_cpu.json: ratio_vs_trl)
	$(PY) scripts/bench_encoder.py
	$(PY) scripts/bench_dpo.py --output outputs/bench/dpo_cpu.json

CORPUS ?= .gpu_corpus
.PHONY: bench-gpu
bench-gpu: ## GPU benchmark of issue 10 (no install: docs/gpu-run.md; PY=python3 CORPUS=DIR): outputs/bench/bench_gpu.{json,md}
	$(PY) scripts/bench_gpu.py --corpus $(CORPUS)
