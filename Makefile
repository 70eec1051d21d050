# lgn-fpga: every target bootstraps what it needs (virtual env, pip packages, and, as root, apt packages).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LGN := $(VENV)/bin/lgn-fpga
# The CPU build of torch (a local wheel on our machines; on yours pip fetches it). Override for CUDA:
#   make TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
APT_PACKAGES ?= iverilog verilator
# Debian packages that are data, not programs (checked with dpkg): Fashion-MNIST for its loader's tests.
APT_DATA ?= dataset-fashion-mnist
# Read the reference datasets in place when the shared folder sits beside the repository.
ifneq ($(wildcard ../shared/data),)
export LGN_FPGA_DATA ?= $(abspath ../shared/data)
endif

DEMO_RUN ?= runs/demo
DEMO_OUT ?= out/demo
# The bitstream goes where `lgn-fpga build --board icebreaker` puts it, so `lgn-fpga stream` finds it afterwards.
DEMO_BUILD ?= build/icebreaker
PYTEST_ARGS ?=

.PHONY: help venv sysdeps demo test test-quick test-all sim bench bench-quick gpu-check clean distclean

help:
	@echo "make demo   train the digits-tiny model with Gumbel-STE end to end and print a summary"
	@echo "make test   run the test suite (everything but tests marked slow)"
	@echo "make test-quick  the tests that need no toolchain, simulator, data or training (under a minute)"
	@echo "make test-all  the whole suite, slow tests included"
	@echo "make sim [MODEL=file.lgn]  hardware simulation == software, image by image"
	@echo "make bench  benchmark tables (kernels, inference, HDL)"

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)" 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -m pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import torch, amaranth, lgn_fpga" 
	@touch $@

venv: $(VENV)/.installed

# Simulators for the cycle-accuracy tests: installed when missing and running as root, else a hint.
sysdeps:
	@missing=""; for p in $(APT_PACKAGES); do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	for p in $(APT_DATA); do dpkg -s $$p >/dev/null 2>&1 || ! command -v dpkg >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing (apt)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; }; \
	  else echo "note:$$missing not found; install with 'sudo apt install$$missing' (the tests that need them skip without them)"; fi; \
	fi

demo: venv sysdeps
	rm -rf $(DEMO_RUN) $(DEMO_OUT)
	$(LGN) train digits --config digits-tiny -o $(DEMO_RUN)
	$(LGN) export $(DEMO_RUN) -o $(DEMO_OUT)/model.lgn
	$(PY) -m lgn_fpga.sim $(DEMO_OUT)/model.lgn --build-dir $(DEMO_OUT)/sim --board icebreaker
	$(LGN) build $(DEMO_OUT)/model.lgn --board icebreaker -o $(DEMO_BUILD)
	$(LGN) report $(DEMO_RUN) --model $(DEMO_OUT)/model.lgn --sim $(DEMO_OUT)/sim --build $(DEMO_BUILD)

# Hardware == software, image by image (Verilator and cocotb + Icarus when installed, Amaranth's simulator).
MODEL ?= $(DEMO_OUT)/model.lgn
SIM_ARGS ?=
sim: venv sysdeps
	@test -f $(MODEL) || { echo "error: $(MODEL) not found; run 'make demo' first or pass MODEL=path/to/model.lgn"; exit 2; }
	$(PY) -m lgn_fpga.sim $(MODEL) $(SIM_ARGS)

bench: venv
	$(PY) bench/kernels.py
	$(PY) bench/train_step.py
	$(PY) bench/infer.py
	$(PY) bench/hdl.py

bench-quick: venv
	$(PY) bench/kernels.py --quick
	$(PY) bench/train_step.py --quick
	$(PY) bench/infer.py --quick
	$(PY) bench/hdl.py --quick

# One call on a lent GPU machine: triton vs reference correctness, then timings against difflogic's CUDA kernel.
gpu-check:
	bench/gpu_check.sh

test: venv sysdeps
	$(PY) -m pytest -m "not slow" -q $(PYTEST_ARGS)

# For someone changing one module: no toolchain, simulators, data, training fixtures or heavy runs (< 1 min).
QUICK_MARKERS ?= not slow and not toolchain and not sim and not data and not train and not heavy and not install and not gpu
test-quick: venv
	$(PY) -m pytest -m "$(QUICK_MARKERS)" -q $(PYTEST_ARGS)

test-all: venv sysdeps
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf runs/demo out build sim_build .pytest_cache

distclean: clean
	rm -rf $(VENV) *.egg-info
