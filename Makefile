# Two entry points for a fresh machine (see README): `make app` and `make test`.
# The virtual environment is (re)built only when pyproject.toml changes, so both are quick
# on a machine that already has .venv.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# Everything: the app, local GGUF models, tuning (with the PostgreSQL driver for shared studies)
# and the test tools. A production router needs none of these extras: `pip install .` (see README).
EXTRAS := app,local,tune,postgres,dev
# llama.cpp is built for a fixed instruction set (AVX2/FMA/F16C on x86-64), not -march=native:
# the same kernels, hence the same numerics, on every CPU that runs it, and none of the
# AVX-512/AMX paths that differ by machine (AMX tiles die with SIGILL on some VMs). Built once
# into a wheelhouse outside the checkout; pip prefers that wheel to the registry's sdist.
LLAMA_CPP := $(shell sed -n 's/.*"llama-cpp-python\[server\]\(==[0-9.]*\)".*/llama-cpp-python\1/p' pyproject.toml)
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_BMI2=ON
WHEELHOUSE ?= $(HOME)/.cache/workbench-wheels/llama-cpp-portable-v1

# The app listens on localhost only (.streamlit/config.toml). Sharing it is an explicit choice:
# `make app APP_ADDRESS=0.0.0.0` (every interface) or a single interface's address; see the
# README's "Sharing the app" for what that exposes.
APP_ADDRESS ?=

.PHONY: app test lint

$(STAMP): pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	@if ! ls $(WHEELHOUSE)/*.whl >/dev/null 2>&1; then \
		echo "building $(LLAMA_CPP) for a portable instruction set (once; about 10 minutes)"; \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(VENV)/bin/python -m pip wheel --quiet --no-deps \
			--no-cache-dir --no-binary llama-cpp-python -w $(WHEELHOUSE) '$(LLAMA_CPP)'; \
	fi
	$(VENV)/bin/python -m pip install --quiet --find-links $(WHEELHOUSE) -e '.[$(EXTRAS)]'
	touch $(STAMP)

app: $(STAMP)
	$(VENV)/bin/python -m streamlit run app.py $(if $(APP_ADDRESS),--server.address=$(APP_ADDRESS))

test: $(STAMP)
	$(VENV)/bin/python -m ruff check .
	$(VENV)/bin/python -m pytest -q --durations=30

lint: $(STAMP)
	$(VENV)/bin/python -m ruff check .
