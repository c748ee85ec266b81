# Two entry points for a fresh machine (see README): `make app` and `make test`.
# The virtual environment is (re)built only when pyproject.toml changes, so both are quick
# on a machine that already has .venv.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# Everything: the app, local GGUF models, tuning and the test tools. A production router needs
# none of these extras: `pip install .` (see README).
EXTRAS := app,local,tune,dev

.PHONY: app test lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

app: $(STAMP)
	$(VENV)/bin/python -m streamlit run app.py

test: $(STAMP)
	$(VENV)/bin/python -m ruff check .
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/python -m ruff check .
