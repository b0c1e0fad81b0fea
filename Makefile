# Quick start: `make demo` (train + evaluate on the built-in dataset), `make test`.
# Both create .venv and install the package with its dev extras when it is
# missing or older than pyproject.toml.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_WORKDIR ?= runs/shapes

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) train.py --config configs/shapes.py --workdir $(DEMO_WORKDIR)
	$(PY) evaluate.py --config configs/shapes.py --workdir $(DEMO_WORKDIR)

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) runs .pytest_cache
