# The two front doors of the repository: `make demo` and `make test` (see README.md).
# Each creates the virtual environment it needs on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
DEMO_VENV := .venv-demo
TEST_VENV := .venv
DEMO_ARGS ?=

# Browser-side test tools from the npm registry (axe-core, injected into pages by the
# accessibility tests), pinned by tests/tools/package-lock.json.
AXE := tests/tools/node_modules/axe-core/axe.min.js

.PHONY: demo test lint typecheck pytest system-packages benchmark-packages benchmarks clean translations

demo: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/pybabel -q compile -d permalink/locale -D messages
	$(DEMO_VENV)/bin/kashflow-permalink demo $(DEMO_ARGS)

test: $(TEST_VENV)/.installed system-packages lint typecheck pytest

$(DEMO_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/pip install --quiet --upgrade pip
	$(DEMO_VENV)/bin/pip install --quiet -e .
	$(DEMO_VENV)/bin/pybabel -q compile -d permalink/locale -D messages
	touch $@

$(TEST_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install --quiet --upgrade pip
	$(TEST_VENV)/bin/pip install --quiet -e '.[test]'
	$(TEST_VENV)/bin/pybabel -q compile -d permalink/locale -D messages
	touch $@

# Debian packages the tests drive for real: chromium (browser tests), qpdf (PDF checks),
# the CPython email test corpus (real-world mail), postgresql (the shared store),
# dovecot-imapd (the IMAP door's mailbox), fonts-dejavu-core (the statement page in
# Welsh), npm (the browser-side test tools).
system-packages:
	scripts/system-packages

lint: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/ruff check .
	$(TEST_VENV)/bin/ruff format --check .

typecheck: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/mypy

# The suite runs beside a throwaway PostgreSQL (scripts/with-postgres), stopped afterwards.
# The message catalogues are compiled first, so the .mo files match the .po files.
pytest: $(TEST_VENV)/.installed system-packages $(AXE)
	$(TEST_VENV)/bin/pybabel -q compile -d permalink/locale -D messages
	scripts/with-postgres $(TEST_VENV)/bin/pytest -p no:cacheprovider

$(AXE): tests/tools/package.json tests/tools/package-lock.json
	npm ci --prefix tests/tools --no-audit --no-fund --loglevel=error
	touch $@

# After changing a word in a template or a message in the code: gather the messages
# again and bring every catalogue up to date (then translate what is new or fuzzy).
translations: $(TEST_VENV)/.installed
	$(TEST_VENV)/bin/pybabel -q extract -F permalink/locale/babel.cfg -k N_ --no-location \
	  --omit-header --sort-output -o permalink/locale/messages.pot .
	$(TEST_VENV)/bin/pybabel -q update -i permalink/locale/messages.pot -d permalink/locale \
	  -D messages --width 100

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
	rm -rf $(DEMO_VENV) $(TEST_VENV) var *.egg-info tests/tools/node_modules
	rm -f permalink/locale/*/LC_MESSAGES/*.mo
