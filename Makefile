# One-command set-up. `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# The CPU wheel; a looser requirement would pull gigabytes of CUDA packages.
TORCH  ?= torch==2.13.0
# Glibc allocator settings: without them the same forward pass varies 2-9 s on these machines.
export MALLOC_MMAP_THRESHOLD_ := 33554432
export MALLOC_TRIM_THRESHOLD_ := 2147483647
export MALLOC_TOP_PAD_ := 536870912

.PHONY: setup demo test bench clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[test]" "$(TORCH)"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/videoldm inflate --base sd15 --latent 64x64 --frames 16

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_unet.py

clean:
	rm -rf $(VENV)
