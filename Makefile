# lava-deploy: the two commands of the README are `make demo` and `make test`.
# Lava pins Python 3.10: the virtual environment is built from .python-version.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTHON310 := $(shell cat .python-version 2>/dev/null | xargs -I{} sh -c 'p=$$(pyenv root 2>/dev/null)/versions/{}/bin/python; test -x $$p && echo $$p' || true)
ifeq ($(PYTHON310),)
PYTHON310 := $(shell command -v python3.10)
endif
DEMO_MODEL := netx_models/digits-cnn-t3/model.net
DEMO_OUT := out/demo

.PHONY: setup demo test bench models clean

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found: install it with pyenv (see .python-version)"; exit 1; }
	@test -x $(PY) || $(PYTHON310) -m venv $(VENV)
	@echo "installing lava-deploy and its pinned dependencies into $(VENV) (about 2 minutes the first time)"
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | { grep -v 'is ignored: it is neither' || true; }; \
	  test $${PIPESTATUS[0]} -eq 0
	@$(PY) -c "import lava_deploy, lava.proc.dense.process, h5py, torch" || { echo "installation failed"; exit 1; }
	@touch $@

setup: $(VENV)/.installed

# The main job: compare the shipped digits CNN on Lava's CPU simulator with the integer reference.
demo: setup
	$(VENV)/bin/lava-deploy compare $(DEMO_MODEL) --dataset digits --samples 360 --plots $(DEMO_OUT)

test: setup
	$(VENV)/bin/pytest -q

# Benchmarks are not part of the tests: each writes JSON, a markdown table and plots to benchmarks/results/.
bench: setup
	@$(PY) -m pip install -q --disable-pip-version-check -e '.[test,bench]' 2>&1 | { grep -v 'is ignored: it is neither' || true; }
	$(PY) benchmarks/sparsity.py
	$(PY) benchmarks/latency_accuracy.py
	$(PY) benchmarks/simulator_speed.py
	$(PY) benchmarks/nir_export.py
	$(PY) benchmarks/sharding.py

models: setup
	$(PY) netx_models/build.py

clean:
	rm -rf $(VENV) out .pytest_cache
