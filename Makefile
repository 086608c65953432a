# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 5000

.PHONY: run test train bench clean help

help:
	@echo "make run    - create .venv, install requirements, serve the default model on http://localhost:$(PORT)"
	@echo "make test   - install dev requirements (llama.cpp built once per venv), get a Chromium, run the whole test suite"
	@echo "make train  - retrain both shipped models (data from SCRIPTORIUM_DATA or downloaded)"
	@echo "make bench  - run the generation benchmark"

$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# llama-cpp-python (a dev requirement, for the GGUF export tests) compiles llama.cpp from source, portable: without
# -march=native, because llama.cpp's AMX int8 kernels die with "Illegal instruction" on q8_0 models on some
# virtual machines that report AMX (ours among them), and a portable build behaves the same on every CI runner.
# No llava/mtmd library: nothing here uses it, and it is a quarter of the files to compile.
# pip's own wheel cache keys a built wheel by the source package alone, not by CMAKE_ARGS, so it would hand back a
# native wheel built earlier on the machine: the wheel is built without pip's cache into a folder of our cache
# named after the build flags, and installed from there (built once per machine and flags, with all cores).
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF
LLAMA_SPEC := $(shell grep -E '^llama-cpp-python' requirements-dev.txt)
LLAMA_WHEELS := $(or $(SCRIPTORIUM_CACHE),$(HOME)/.cache/scriptorium)/wheels/llama-$(shell echo '$(LLAMA_SPEC) $(LLAMA_CMAKE_ARGS)' | cksum | cut -d' ' -f1)
NPROC := $(shell nproc 2>/dev/null || echo 2)

$(VENV)/.dev: requirements-dev.txt requirements-export.txt requirements.txt $(VENV)/.runtime
	ls $(LLAMA_WHEELS)/llama_cpp_python-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$(NPROC) \
	  $(PY) -m pip wheel --quiet --no-cache-dir --no-deps --wheel-dir $(LLAMA_WHEELS) "$(LLAMA_SPEC)"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --quiet --no-cache-dir --find-links $(LLAMA_WHEELS) \
	  -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	PORT=$(PORT) $(PY) app.py

# First a Chromium for the browser tests where the machine allows one (tests/app/browser.py says which, or why not).
test: $(VENV)/.dev
	@$(PY) -m tests.app.browser
	$(PY) -m pytest

# Each shipped model: train (one core each, both at once: small models train faster per core on one thread),
# then evaluate on the validation split and write its card. Data: the corpus by name, found in the directory
# SCRIPTORIUM_DATA names (e.g. SCRIPTORIUM_DATA=../shared/data make train), else downloaded into the cache; by
# name, so the recorded commands and the cards carry no path of this machine.
SHIPPED := shakespeare-gpt shakespeare-lstm

# configs/shakespeare-gpt.yaml learns from models/shakespeare-lstm (training.teacher), which retrains beside it into
# the same directory: the GPT reads a copy of the LSTM as it was before this `make train`, never a half-trained one.
TEACHER_COPY := runs/make-train-teacher/shakespeare-lstm

train: $(VENV)/.runtime
	rm -rf $(TEACHER_COPY) && mkdir -p $(dir $(TEACHER_COPY)) && cp -r models/shakespeare-lstm $(TEACHER_COPY)
	pids=""; for m in $(SHIPPED); do \
	  teacher=""; [ $$m = shakespeare-gpt ] && teacher="--set training.teacher=$(TEACHER_COPY)"; \
	  $(PY) -m training train --config configs/$$m.yaml --output models/$$m --threads 1 --quiet $$teacher & \
	  pids="$$pids $$!"; \
	done; for p in $$pids; do wait $$p || exit 1; done
	for m in $(SHIPPED); do \
	  $(PY) -m training evaluate models/$$m --data tinyshakespeare --split valid && $(PY) -m training card models/$$m || exit 1; \
	done

bench: $(VENV)/.runtime
	$(PY) bench/generation.py

clean:
	rm -rf $(VENV) .pytest_cache
