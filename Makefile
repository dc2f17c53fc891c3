# Everything a fresh machine needs: `make demo` and `make test` create the environment themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RECSYS := $(VENV)/bin/recsys
DEMO_DIR ?= var/demo
DEMO_USERS ?= 20000
DEMO_PORT ?= 8000

.PHONY: install system-deps test lint demo clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

system-deps:
	bash scripts/system_deps.sh

lint: install
	$(VENV)/bin/ruff check .

test: install system-deps
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

demo: install
	bash scripts/demo.sh "$(DEMO_DIR)" "$(DEMO_USERS)" "$(DEMO_PORT)"

clean:
	rm -rf $(VENV) var .pytest_cache
