# autocompress: the two commands of the README's quick start, and helpers.
#   make demo   install into .venv, get Fashion-MNIST, train (or reuse) the reference, search, print the front
#   make test   install the test extras and every optional extra into .venv, and (as root, with
#               apt-get) the system packages CI's tests use, then run the default suite
#   make lint / make typecheck   ruff / mypy (configured in pyproject.toml)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: demo test test-deps lint typecheck data install clean

demo: $(VENV)/.installed data
	$(BIN)/autocompress search experiments/fashion_mnist.yaml

test: $(VENV)/.installed-test test-deps
	$(BIN)/python -m pytest -q --durations=15 tests

# what CI's tests use beyond Python, so a newcomer's `make test` skips nothing CI runs:
# Fashion-MNIST, PostgreSQL (tests/study/test_postgres.py), Chromium (the report in a browser).
# Installed as root with apt-get (as .ci/run does); otherwise one line says what is missing.
test-deps:
	@need=""; \
	[ -d $(FMNIST) ] || [ -n "$$AUTOCOMPRESS_DATA" ] || need="$$need dataset-fashion-mnist"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$$need postgresql"; \
	command -v chromium >/dev/null || need="$$need chromium"; \
	if [ -z "$$need" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing$$need"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; } || \
	  echo "note: could not install$$need; the tests that need them will skip"; \
	else \
	  echo "note: the tests needing$$need will skip; install them with: sudo apt-get install$$need"; \
	fi

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy

install: $(VENV)/.installed

# the core only: what `make demo` needs (optional features are extras, see pyproject.toml)
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3 -m venv failed; installing python3-venv"; \
	  apt-get install -y -qq python3-venv >/dev/null && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	@touch $@

# the tests exercise PostgreSQL, the dashboard, PNG export and inductor: every extra
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test,all]'
	@touch $@

# Fashion-MNIST ships as a Debian package; elsewhere set data.root (or AUTOCOMPRESS_DATA).
data:
	@if [ -d $(FMNIST) ] || [ -n "$$AUTOCOMPRESS_DATA" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing dataset-fashion-mnist"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; }; \
	else \
	  echo "Fashion-MNIST not found: run 'sudo apt-get install dataset-fashion-mnist' or set AUTOCOMPRESS_DATA"; \
	fi

clean:
	rm -rf $(VENV) runs
