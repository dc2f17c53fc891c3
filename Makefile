# Everything a fresh machine needs: `make demo` and `make test` create the environment themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RECSYS := $(VENV)/bin/recsys
DEMO_DIR ?= var/demo
DEMO_USERS ?= 20000
DEMO_PORT ?= 8000
# `make test` runs the suite twice: on the real clock, then with the clock moved a year ahead to
# 15:30 UTC (23:30 in Shanghai, inside the default quiet hours; the UTC and Shanghai dates differ).
MOVED_CLOCK ?= $(shell date -u -d '+1 year' +%F) 15:30:00 UTC
REDIS_URL ?= $(or $(RECSYS_REDIS_URL),redis://127.0.0.1:6379/0)

.PHONY: install system-deps test test-moved-clock lint demo clean

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
	$(MAKE) --no-print-directory test-moved-clock

# libfaketime is preloaded (LD_PRELOAD) into pytest and inherited on purpose by everything it starts
# (embedded redis-server, uvicorn, Chromium): the whole system under test sees one moved clock. The
# shared Redis server keeps the real clock, which is harmless: the caps pass the caller's clock to
# Redis and never read Redis TIME. The first line fails if the preload had no effect.
test-moved-clock: install system-deps
	faketime '$(MOVED_CLOCK)' $(PY) -c "import sys, time; want = sys.argv[1][:10]; \
	  got = time.strftime('%F', time.gmtime()); print('clock moved to', got) if got == want \
	  else sys.exit(f'faketime did not move the clock: {got}, expected {want}')" '$(MOVED_CLOCK)'
	faketime '$(MOVED_CLOCK)' $(PY) -m pytest -q

demo: install
	bash scripts/demo.sh "$(DEMO_DIR)" "$(DEMO_USERS)" "$(DEMO_PORT)"

# Also deletes what demos stored in Redis (key prefixes qm-demo-*, and qm-demo of earlier versions).
clean:
	if [ -x $(PY) ]; then $(PY) scripts/demo_keys.py '$(REDIS_URL)' 'qm-demo' 'qm-demo-*'; fi
	rm -rf $(VENV) var .pytest_cache
