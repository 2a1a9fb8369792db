# Every target creates or reuses the virtual environment it needs.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3
TORCH  ?= torch==2.13.0
JAX    ?= jax[cpu]==0.10.2
STORE  ?= store
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: install features demo test bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	# the PyTorch and JAX backends (what the GPU machines run), for the tests that check extraction there
	$(PY) -m pip install -q "$(TORCH)" "$(JAX)"
	touch $@

install: $(VENV)/.installed

# CIFAR-100, ResNet50 with ImageNet weights at 224: the reference configuration (needs the network once).
features: install
	$(PY) cli.py features --dataset cifar100 --store $(STORE)/cifar100 --backbone resnet50 --weights imagenet --size 224

# Offline transfer learning on real photos: 3,000 CIFAR-10 photos (demo/README.md) -> EfficientNet-Lite0
# codes with its published ImageNet weights, and with random weights (the control) -> the same head on both.
DEMO := --dataset folder:demo/cifar10-sample.zip --store $(STORE)/demo --backbone efficientnet_lite0 --size 224 --quiet
demo: install
	$(PY) cli.py features $(DEMO) --weights imagenet
	$(PY) cli.py features $(DEMO) --weights none
	$(PY) cli.py fit --store $(STORE)/demo --head logreg --features efficientnet_lite0-pool-224-imagenet-fp32 --quiet
	$(PY) cli.py fit --store $(STORE)/demo --head logreg --features efficientnet_lite0-pool-224-none0-fp32 --quiet
	$(PY) cli.py runs --store $(STORE)/demo

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) bench/extract.py

clean:
	rm -rf $(VENV) $(STORE) .pytest_cache
