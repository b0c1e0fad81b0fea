# Quick start: `make demo` (train + evaluate on the built-in dataset), `make test`.
# Both create .venv and install the package with its dev extras when it is
# missing or older than pyproject.toml.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_WORKDIR ?= runs/shapes
# torchvision, the tests' reference for its models: the release for pyproject's
# torch==2.13.0, without its dependencies (its compiled ops need CUDA libraries;
# deeplab_jax/testing/torchvision_models.py loads its model code without them).
TORCHVISION := torchvision==0.28.0

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps $(TORCHVISION)
	touch $(STAMP)

demo: $(STAMP)
	$(PY) train.py --config configs/shapes.py --workdir $(DEMO_WORKDIR)
	$(PY) evaluate.py --config configs/shapes.py --workdir $(DEMO_WORKDIR)

test: $(STAMP)
	$(PY) -m pytest -q tests

clean:
	rm -rf $(VENV) runs .pytest_cache
