# `make demo` and `make test` do all set-up on a fresh machine: a virtual environment in .venv,
# PyTorch, then this package with its test extras.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The PyTorch wheels to install first; override for another platform, e.g.
#   make demo TORCH="torch torchvision --index-url https://download.pytorch.org/whl/cpu"
TORCH ?= torch==2.14.1 torchvision==0.29.1
# Offline machines: a local copy of the default preset's pretrained ViT-Ti/16 (the project's machines
# have one in ../shared/weights). Without it, anovit fetches it through timm when online, and
# otherwise trains the from-scratch preset `scratch` instead, saying so.
SHARED_WEIGHTS := $(abspath ../shared/weights/vit_tiny_patch16_224.safetensors)
ANOVIT_ENCODER_WEIGHTS ?= $(if $(wildcard $(SHARED_WEIGHTS)),$(SHARED_WEIGHTS),)
export ANOVIT_ENCODER_WEIGHTS

.PHONY: install demo test bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/anovit demo --out runs/demo

# Lint, format and the import layering (pyproject.toml) first, then every test.
test: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

# Speed and memory against the straightforward way (benchmarks/results.json), where the default's time goes
# (benchmarks/default_speed.md; --preset tiny: default_speed_tiny.md), then every inference backend x precision: speed and int8's AUROC cost
# (benchmarks/backends.md).
bench: install
	$(BIN)/python benchmarks/bench.py
	$(BIN)/python benchmarks/default_speed.py
	$(BIN)/python benchmarks/backends.py

clean:
	rm -rf runs .pytest_cache
