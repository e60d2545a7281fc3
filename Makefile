# The two commands a new user needs: `make demo` and `make test`.
# Each creates .venv, installs the package and the Debian packages it needs, then runs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SYSTEM_PACKAGES := tshark chromium chromium-driver libndpi-bin tcpdump tcpreplay pmacct snmpd snmp iproute2 libcap2-bin systemd

.PHONY: demo test lint bench system-deps clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

system-deps:
	scripts/install-system-deps.sh $(SYSTEM_PACKAGES)

demo: $(BIN)/.installed system-deps
	$(BIN)/fabricscope demo

test: $(BIN)/.installed system-deps
	$(BIN)/ruff check collectors pipeline dashboards simulator fabricscope tests bench scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest -n auto --maxprocesses=4 --durations=20

bench: $(BIN)/.installed system-deps
	$(BIN)/python -m bench.collector

clean:
	rm -rf $(VENV) .fabricscope .pytest_cache
