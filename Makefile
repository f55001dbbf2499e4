# 1001 Stories platform. `make plan` and `make test` need only python3 and make; the first run creates
# .venv from the pinned requirements.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev
FORMAT ?= table
OUT ?=

.PHONY: plan plan-diff schedule test unit integration lint typecheck bench up preview clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

plan: $(VENV)/.installed
	@PYTHONPATH=. $(PY) -m tools.plan --stack "$(STACK)" --format "$(FORMAT)" $(if $(OUT),--out "$(OUT)")

# The offline plan of every stack at BASE (a git ref) and in the working tree, as a Markdown summary.
plan-diff: $(VENV)/.installed
	@test -n "$(BASE)" || { echo "BASE = '': give the git ref to compare with, e.g. make plan-diff BASE=main" >&2; exit 2; }
	@PYTHONPATH=. $(PY) -m tools.plan_diff --base "$(BASE)"

# The week's scheduled app replicas as a day x hour grid (WEEK: any date in the week).
schedule: $(VENV)/.installed
	@PYTHONPATH=. $(PY) -m tools.schedule --stack "$(or $(STACK),prod)" --week "$(WEEK)"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy .

unit: $(VENV)/.installed
	PYTHONPATH=. $(PY) -m pytest -m "not integration" -q

integration: $(VENV)/.installed
	PYTHONPATH=. $(PY) -m pytest -m integration -q

test: lint typecheck $(VENV)/.installed
	PYTHONPATH=. $(PY) -m pytest -q

bench: $(VENV)/.installed
	PYTHONPATH=. $(PY) -m tools.bench

# The real Pulumi CLI (not available on CI): see README "Deploying with pulumi up".
preview:
	pulumi preview --stack "$(STACK)" --diff --policy-pack policy

up:
	pulumi up --stack "$(STACK)"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
