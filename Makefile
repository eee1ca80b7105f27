# hcp: two commands set everything up on a fresh machine.
#   make demo   run the suite on its embedded defaults
#   make test   lint and run the tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_ARGS ?=
# the test files spread over every core (pytest-xdist), one file per worker at a time
PYTEST_ARGS ?= -n auto --dist loadfile

.PHONY: demo test test-long lint format bench fault fault-processes heap-long clean system-demo system-test

demo: system-demo $(VENV)/.installed
	$(BIN)/hcp demo $(DEMO_ARGS)

test: system-test $(VENV)/.installed tools/micropython/node_modules/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest $(PYTEST_ARGS)

# every test with the long fault, board and load runs that `make test` skips
# (marked `long`, and the firmware's 5,000-rating heap run) and the fuzz tests'
# larger example counts (HCP_LONG=1); about twice as long as `make test`
test-long: system-test $(VENV)/.installed tools/micropython/node_modules/.installed
	HCP_LONG=1 HCP_HEAP_LONG=1 $(BIN)/pytest $(PYTEST_ARGS)

# throughput as ratios against a same-run baseline; figures in results/bench.json
bench: system-test $(VENV)/.installed
	$(BIN)/hcp bench $(BENCH_ARGS)

# the fault run: keypads rating through broker restarts, collector kills, link
# cuts and power cuts; every (device, seq) is counted at the end
FAULT_ARGS ?= --devices 20 --duration 120
fault: system-test $(VENV)/.installed
	$(BIN)/hcp sim fault $(FAULT_ARGS)

# the same with real processes killed by SIGKILL: Mosquitto (persistent), two
# collectors sharing the ingest on PostgreSQL (SQLite where none answers), keypad hosts
fault-processes: system-test $(VENV)/.installed
	$(BIN)/hcp sim fault --processes --devices 12 --collectors 2 --duration 120

# 5,000 ratings of the frozen firmware on MicroPython's 32-bit unix port at a
# 96K heap, the live heap checked after each drain (about a minute; make test skips it)
heap-long: system-test $(VENV)/.installed
	HCP_HEAP_LONG=1 $(BIN)/pytest -m heap_long $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

system-demo:
	@tools/bootstrap-system.sh demo

system-test:
	@tools/bootstrap-system.sh test

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,kiosk]'
	touch $@

tools/micropython/node_modules/.installed: tools/micropython/package.json tools/micropython/package-lock.json
	npm ci --prefix tools/micropython --no-audit --no-fund --loglevel=error
	touch $@

clean:
	rm -rf $(VENV) tools/micropython/node_modules .hcp-demo .pytest_cache
