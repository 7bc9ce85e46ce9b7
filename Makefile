# edge-msl: the two commands a newcomer runs are `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
PY      = $(VENV)/bin/python
PYCHECK = @$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "edge-msl needs Python >= 3.11, found " + sys.version.split()[0])'
BANK   ?= data/dry/bank-small.npz
EXTRAS ?= train,alsa,mqtt,dev,jax

.PHONY: help system venv demo scene test test-device test-training test-convert bank dataset faults clean weights dist

help:
	@echo "make demo     set up a small venv (edge-msl[plot]) and locate the talkers of the bundled recording"
	@echo "make test     set up everything and run the test suite"
	@echo "make test-device / test-training / test-convert   one side of the suite (docs/testing.md)"
	@echo "make bank     build the full dry-signal bank (data/dry/bank.npz)"
	@echo "make scene    set up everything, simulate a small scene and print its ground truth"
	@echo "make dataset  simulate 1,000 windows with 1-4 sources and plot label statistics"
	@echo "make weights  pack models/<array>/ float weights into the package (train_tf/float_models, float16)"
	@echo "make dist     build the sdist and the wheel into dist/"
	@echo "make faults   fault injection against the daemon (broker, device, full disk, fuzzing, soak; ~16 min, root for tmpfs)"

system:
	@bash .ci/system-deps.sh

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYCHECK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	@touch $@

venv: system $(VENV)/.installed

$(BANK): | venv
	$(PY) -m train_tf.signals build --out $(BANK) --n-espeak 24 --n-flite 6 --n-festival 2 --max-asterisk-files 40

# the demo needs no system packages, dry-signal bank or TensorFlow: numpy, a TFLite runtime, matplotlib
$(VENV)/.demo: setup.cfg pyproject.toml
	$(PYCHECK)
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { echo "edge-msl: python3 -m venv needs ensurepip; first: sudo apt-get install -y python3-venv" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[plot]"
	@touch $@

demo: $(VENV)/.demo
	$(PY) docs/examples/demo.py --plot out/demo/example.png

scene: venv $(BANK)
	$(PY) -m train_tf.simulate scene --bank $(BANK) --seed 1 --min-sources 2 --max-sources 3 --wav data/demo-scene.wav

test: venv
	$(PY) -m pytest -q

# the device side waits on real time (daemons, brokers, paced PCMs): two workers halve its wall time
test-device: venv
	$(PY) -m pytest -q -n 2 -m device

test-training test-convert: venv
	$(PY) -m pytest -q -m $(@:test-%=%)

bank: venv
	$(PY) -m train_tf.signals build --out data/dry/bank.npz

dataset: venv $(BANK)
	$(PY) -m train_tf.simulate windows --out data/sim-1k --n 1000 --min-sources 1 --max-sources 4 --bank $(BANK) --seed 1
	$(PY) -m train_tf.simulate stats data/sim-1k --png data/sim-1k/stats.png

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

faults: venv
	$(PY) -m benchmarks.faults

weights: venv
	$(PY) -m train_tf.pack_weights

dist: venv
	$(PY) -m train_tf.pack_weights --check
	$(PY) -m build --no-isolation -o dist .
