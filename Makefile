# The two front doors of the repository: `make demo` and `make test` (see README.md).
# Each creates the virtual environment it needs on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
DEMO_VENV := .venv-demo
TEST_VENV := .venv
DEMO_ARGS ?=

.PHONY: demo test lint typecheck pytest system-packages benchmark-packages benchmarks clean

demo: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/kashflow-permalink demo $(DEMO_ARGS)

test: $(TEST_VENV)/.installed system-packages lint typecheck pytest

$(DEMO_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/pip install --quiet --upgrade pip
	$(DEMO_VENV)/bin/pip install --quiet -e .
	touch $@

$(TEST_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install --quiet --upgrade pip
	$(TEST_VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

# Debian packages the tests drive for real: chromium (browser tests), qpdf (PDF checks),
# the CPython email test corpus (real-world mail), postgresql (the shared store),
# dovecot-imapd (the IMAP door's mailbox).
system-packages:
	scripts/system-packages

lint: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/ruff check .
	$(TEST_VENV)/bin/ruff format --check .

typecheck: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/mypy

# The suite runs beside a throwaway PostgreSQL (scripts/with-postgres), stopped afterwards.
pytest: $(TEST_VENV)/.installed system-packages
	scripts/with-postgres $(TEST_VENV)/bin/pytest -p no:cacheprovider

# The benchmarks print figures (README.md, Performance); they run beside a throwaway
# PostgreSQL too, and the load figures need Debian's wrk.
benchmarks: $(TEST_VENV)/.installed system-packages benchmark-packages
	scripts/with-postgres $(TEST_VENV)/bin/python -m benchmarks

benchmark-packages:
	@command -v wrk >/dev/null 2>&1 || { \
	  sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  echo "installing Debian packages: wrk"; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq wrk >/dev/null; }

clean:
	rm -rf $(DEMO_VENV) $(TEST_VENV) var *.egg-info
