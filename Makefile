# The README's two commands: `make demo` and `make test`. `.ci/run` calls `make test`.
# The broker stays up after `make test` so the next run is fast; `stream-orch kafka down` stops it.

VENV ?= .venv
PY := $(VENV)/bin/python
SO := $(VENV)/bin/stream-orch
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test test-cluster lint kafka-up kafka-down

install: $(STAMP)

# Re-installs when pyproject.toml changes; the stamp keeps repeated runs fast.
$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

kafka-up: install
	$(SO) kafka up

kafka-down:
	@test -x $(SO) && $(SO) kafka down || true

# The main job. Its body lives in scripts/demo.sh; `make demo TOPOLOGY=reconciliation` runs
# another shipped topology (scripts/demo.py lists them).
TOPOLOGY ?= fraud
demo: kafka-up
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" TOPOLOGY="$(TOPOLOGY)" ./scripts/demo.sh

# The shipped topologies' cases (in-process, README "Testing a topology"), then the whole suite
# (unit + integration) against the real local broker.
# pytest exits 5 when it collects no tests; that is not a failure here.
# Extra pytest arguments: make test PYTEST_ARGS='-m "not integration"'
test: kafka-up
	$(SO) test topologies/fraud_detection.yaml topologies/fraud_detection.cases.yaml
	$(SO) test topologies/fleet.yaml topologies/fleet.cases.yaml
	$(SO) test examples/reorder/reorder.yaml examples/reorder/reorder.cases.yaml
	$(SO) test topologies/inventory.yaml topologies/inventory.cases.yaml
	$(PY) -m pytest --durations=30 $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

# A 3-broker cluster of the tests' own (free ports from 9292, 512 MB heap each) and the
# broker-failure tests on it; skipped by `make test` (three more JVMs on a 2-core machine).
test-cluster: install
	STREAM_ORCH_CLUSTER_TESTS=1 $(PY) -m pytest -m cluster tests/integration $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
