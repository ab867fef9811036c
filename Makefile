# Two commands on a fresh machine: `make demo` and `make test`. Both bootstrap .venv themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# The stamp is rebuilt whenever the pins or the package metadata change.
STAMP  := $(VENV)/.torchship-installed

.PHONY: demo test test-e2e lint lock bench clean venv

venv: $(STAMP)

$(STAMP): requirements/dev.txt src/torchship/locks/prod.txt setup.cfg pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/torchship run models/minilm-embeddings/model.yaml

test: $(STAMP)
	$(PY) -m pytest --durations=15

# The slow end-to-end tests, not part of `make test`: the image (build, push, pull by digest, run, parity),
# the buildspec phase by phase, the Kubernetes rehearsal in podman kube play, and the README's
# "Bring your own model" walkthrough. Installs podman/buildah/debootstrap/docker-registry/catatonit first
# (root, Debian). First run ~30 min on vfs (no layer cache), then ~20 min. .ci/run runs it after `make test`.
test-e2e: $(STAMP)
	sh scripts/install-container-tools.sh
	sh scripts/install-lint-tools.sh
	$(PY) -m pytest -m "e2e or readme" -p no:cacheprovider

# mypy reads its settings (files, per-module ignores) from pyproject.toml. First run ~50 s (it analyses torch and
# transformers once, 1.7 GB of memory), then ~2-5 s from .mypy_cache.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Re-pin the requirements (needs the package registry). The locks ship inside the package (src/torchship/locks/):
# `torchship init` pins a user repository to prod.txt, `torchship image` installs serve.txt into the image.
lock: $(STAMP)
	cd requirements && ../$(VENV)/bin/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links -o ../src/torchship/locks/prod.txt prod.in
	cd requirements && ../$(VENV)/bin/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links -o ../src/torchship/locks/serve.txt serve.in
	cd requirements && ../$(VENV)/bin/pip-compile -q --strip-extras --no-emit-index-url --no-emit-find-links -o dev.txt dev.in

bench: $(STAMP)
	$(PY) bench/serving.py

clean:
	rm -rf outputs .pytest_cache
