PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Stamp file: the install reruns when the package's requirements change.
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint clean

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet --constraint constraints.txt --editable '.[dev,demo]'
	touch $@

demo: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(PY) recipes/train_alc.py --output_dir outputs/demo --max_steps 60 \
		--per_device_train_batch_size 64 --logging_steps 10

test: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(PY) -m pytest

lint: $(INSTALLED)
	$(PY) -m ruff check alc_hf recipes tests benchmarks
	$(PY) -m ruff format --check alc_hf recipes tests benchmarks

clean:
	rm -rf $(VENV) outputs
