# Every target creates or reuses the virtual environment it needs: `demo` and `features` only what
# cnncodes needs to run; `test` adds the test extras (pytest, PyTorch and JAX for the backend tests).
VENV   ?= .venv
PY     := $(VENV)/bin/python
CLI     = $(PY) -m cnncodes
PYTHON ?= python3
STORE  ?= store

.PHONY: install features demo test test-all lint results check-results bench clean

$(VENV)/.installed-run: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed-run
	$(PY) -m pip install -q -e ".[test,torch,jax]"
	touch $@

install: $(VENV)/.installed-run

# CIFAR-100, ResNet50 with ImageNet weights at 224: the reference configuration (needs the network once).
features: install
	$(CLI) features --dataset cifar100 --store $(STORE)/cifar100 --backbone resnet50 --weights imagenet --size 224

# Offline transfer learning on real photos: 3,000 CIFAR-10 photos (demo/README.md) -> EfficientNet-Lite0
# codes with its published ImageNet weights, and with random weights (the control) -> the same head on both.
# The test suite runs the demo at DEMO_SIZE=128, a third of the work.
DEMO_SIZE ?= 224
DEMO := --dataset folder:demo/cifar10-sample.zip --store $(STORE)/demo --backbone efficientnet_lite0 --size $(DEMO_SIZE) --quiet
demo: install
	$(CLI) features $(DEMO) --weights imagenet
	$(CLI) features $(DEMO) --weights none
	$(CLI) fit --store $(STORE)/demo --head logreg --features efficientnet_lite0-pool-$(DEMO_SIZE)-imagenet-fp32 --quiet
	$(CLI) fit --store $(STORE)/demo --head logreg --features efficientnet_lite0-pool-$(DEMO_SIZE)-none0-fp32 --quiet
	$(CLI) runs --store $(STORE)/demo

# The README's test command: every test but those marked slow, on both cores (pytest-xdist).
test: $(VENV)/.installed-test
	$(PY) -m pytest -q -n 2 -m "not slow"

# The whole suite, slow tests included: what CI runs (.ci/run), with the linters.
test-all: $(VENV)/.installed-test
	$(PY) -m pytest -q -n 2

# ruff (pyflakes, pycodestyle, import order: pyproject.toml) and the import contracts (setup.cfg)
lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# The README's results section and bench/RESULTS.md, rebuilt from the records in bench/records/ (seconds,
# no model runs); check-results (CI) fails when a committed file differs from what its records give.
results: $(VENV)/.installed-run
	$(PY) bench/results.py

check-results: $(VENV)/.installed-run
	$(PY) bench/results.py --check

bench: $(VENV)/.installed-test
	$(PY) bench/extract.py

clean:
	rm -rf $(VENV) $(STORE) .pytest_cache
