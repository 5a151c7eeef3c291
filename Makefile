PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build on this machine's disk; installed first so that no dependency can pull a CUDA build (several GB).
TORCH := torch==2.13.0
# Stamp file: the install reruns when the package's requirements or the lock change.
INSTALLED := $(VENV)/.installed
LOCK_VENV ?= .venv-lock

.PHONY: demo demo-verifier test lint lock clean

# Every package comes at the version pinned in constraints.txt (the stack the suite passed on), the build tools
# included: the package is built without build isolation so that a setuptools release cannot change the install.
$(INSTALLED): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade --constraint constraints.txt pip setuptools
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet --constraint constraints.txt --no-build-isolation --editable '.[dev,demo,cpu]'
	touch $@

# Train, then the rest of the loop (recipes/demo_loop.py): certify a threshold on the catalog's test traffic, its ground
# truth playing the person who labels, and decide new offers with that certificate.
demo: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(PY) recipes/train_alc.py --output_dir outputs/demo --overwrite_output_dir true --max_steps 60 \
		--per_device_train_batch_size 64 --logging_steps 10
	HF_HUB_OFFLINE=1 $(PY) recipes/demo_loop.py outputs/demo/final

# The demo, then a cross-encoder verifier on negatives mined with the trained bi-encoder: coverage at 90% and 95% with
# the cosine and with the verifier as the accept score. A quick budget (a random 16,000 of the verifier's pairs, one
# epoch); docs/verifier.md says what it shows.
demo-verifier: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(PY) recipes/train_alc.py --output_dir outputs/demo_verifier --overwrite_output_dir true --max_steps 60 \
		--per_device_train_batch_size 64 --logging_steps 10 --train_verifier true --verifier_num_mined 1 \
		--verifier_max_train_samples 16000 --verifier_epochs 1 --verifier_max_length 48

test: $(INSTALLED)
	HF_HUB_OFFLINE=1 $(PY) -m pytest

lint: $(INSTALLED)
	$(PY) -m ruff check alc_hf recipes tests benchmarks
	$(PY) -m ruff format --check alc_hf recipes tests benchmarks

# Upgrade the whole stack on purpose: a fresh venv takes the newest releases pyproject.toml allows, the suite must pass
# on it (with the real data required), and only then are its exact versions written to constraints.txt.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip setuptools
	$(LOCK_VENV)/bin/python -m pip install --quiet $(TORCH)
	echo '$(TORCH)' > $(LOCK_VENV)/torch-constraint.txt
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade --constraint $(LOCK_VENV)/torch-constraint.txt \
		--no-build-isolation --editable '.[dev,demo,cpu]'
	HF_HUB_OFFLINE=1 ALC_HF_REQUIRE_SHARED_DATA=1 $(LOCK_VENV)/bin/python -m pytest -q
	{ echo '# The tested stack: written by `make lock` after the suite passed on a fresh venv; see docs/development.md.'; \
	  $(LOCK_VENV)/bin/python -m pip freeze --all --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf $(LOCK_VENV)
	@echo "constraints.txt rewritten: review 'git diff constraints.txt', then run 'make test' on a fresh clone."

clean:
	rm -rf $(VENV) $(LOCK_VENV) outputs
