# The two commands of the quick start are `make demo` and `make test`.
# Both run `bootstrap` first, which installs what is missing and nothing else.
VENV := .venv
PY := $(VENV)/bin/python
LAB_DIR ?= .vmdr-lab

.PHONY: bootstrap demo test test-unit test-functional lint typecheck clean lab-down

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	@$(PY) scripts/demo.py --dir $(LAB_DIR)

test: bootstrap lint typecheck
	@$(PY) -m pytest -q

test-unit: bootstrap
	@$(PY) -m pytest -q tests/unit

test-functional: bootstrap
	@$(PY) -m pytest -q tests/functional tests/e2e

lint: bootstrap
	@$(VENV)/bin/ruff check src tests bench scripts
	@$(VENV)/bin/ruff format --check src tests bench scripts

typecheck: bootstrap
	@$(VENV)/bin/mypy

lab-down:
	@$(VENV)/bin/vmdr lab down --dir $(LAB_DIR) || true

clean: lab-down
	rm -rf build $(VENV) tools/azurite/node_modules $(LAB_DIR)
