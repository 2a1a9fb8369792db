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

# Offline end to end: scikit-learn's digits -> ResNet50 codes (seeded random weights) -> a head and its accuracy.
demo: install
	$(PY) cli.py features --dataset digits --store $(STORE)/digits --weights none --size 32
	$(PY) cli.py info $(STORE)/digits
	$(PY) cli.py fit --store $(STORE)/digits --head logreg

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) bench/extract.py

clean:
	rm -rf $(VENV) $(STORE) .pytest_cache
