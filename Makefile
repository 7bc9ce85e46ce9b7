# edge-msl: the two commands a newcomer runs are `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY      = $(VENV)/bin/python
BANK   ?= data/dry/bank-small.npz
EXTRAS ?= train,alsa,mqtt,dev,jax

.PHONY: help system venv demo test bank dataset clean

help:
	@echo "make demo     set up everything, simulate a small scene and print its ground truth"
	@echo "make test     set up everything and run the test suite"
	@echo "make bank     build the full dry-signal bank (data/dry/bank.npz)"
	@echo "make dataset  simulate 1,000 windows with 1-4 sources and plot label statistics"

system:
	@bash .ci/system-deps.sh

$(VENV)/.installed: setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "edge-msl needs Python >= 3.11, found " + sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $@

venv: system $(VENV)/.installed

$(BANK): | venv
	$(PY) -m train_tf.signals build --out $(BANK) --n-espeak 24 --n-flite 6 --n-festival 2 --max-asterisk-files 40

demo: venv $(BANK)
	$(PY) -m train_tf.simulate scene --bank $(BANK) --seed 1 --min-sources 2 --max-sources 3 --wav data/demo-scene.wav

test: venv
	$(PY) -m pytest -q

bank: venv
	$(PY) -m train_tf.signals build --out data/dry/bank.npz

dataset: venv $(BANK)
	$(PY) -m train_tf.simulate windows --out data/sim-1k --n 1000 --min-sources 1 --max-sources 4 --bank $(BANK) --seed 1
	$(PY) -m train_tf.simulate stats data/sim-1k --png data/sim-1k/stats.png

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
