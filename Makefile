# 1001 Stories platform. `make plan` and `make test` need only python3 and make; the first run creates
# .venv from the pinned requirements.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev
FORMAT ?= table
OUT ?=

.PHONY: plan plan-diff schedule backup verify-backup restore restore-drill bench-restore bench-move test unit integration lint typecheck bench bench-plan up preview clean e2e e2e-up e2e-down e2e-images

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
	PYTHONPATH=. $(PY) -m pytest -m "not integration and not e2e and not engine" -q

integration: $(VENV)/.installed
	PYTHONPATH=. $(PY) -m pytest -m integration -q

test: lint typecheck $(VENV)/.installed
	PYTHONPATH=. $(PY) -m pytest -q

# The e2e layer (README "The e2e layer"): the e2e stack's plan created on this machine's Docker engine.
# `make e2e` builds what is missing, creates the stack, checks it and removes it (also part of `make test`);
# `make e2e-up` leaves it running for a person to look at, `make e2e-down` removes all of it.
e2e: $(VENV)/.installed
	PYTHONPATH=. $(PY) -m pytest -m engine -q

e2e-images: $(VENV)/.installed
	PYTHONPATH=. $(PY) -m e2e.images

e2e-up: $(VENV)/.installed
	PYTHONPATH=. $(PY) -m e2e.stack up

e2e-down: $(VENV)/.installed
	PYTHONPATH=. $(PY) -m e2e.stack down

bench: $(VENV)/.installed
	PYTHONPATH=. $(PY) -m tools.bench

# `make plan STACK=prod FORMAT=json` (prod unless STACK is given here) against importing its libraries
# alone: RUNS runs of each (default 5), their median wall and CPU times and the ratio.
bench-plan: $(VENV)/.installed
	@PYTHONPATH=. $(PY) -m tools.bench_plan --runs "$(or $(RUNS),5)" \
	  --stack "$(if $(filter command line,$(origin STACK)),$(STACK),prod)"

# Operator commands against a deployed stack's backup container (the docker CLI, with access to the
# stack's Docker host). See README "Backups and restores".
DOCKER_OF_STACK = docker -H "$$(PYTHONPATH=. $(PY) -m tools.stack_value --stack $(STACK) host.dockerHost)"
STORIES_BACKUP = $(DOCKER_OF_STACK) exec $(STACK)-backup stories-backup

backup: $(VENV)/.installed
	$(STORIES_BACKUP) backup all --type $(or $(TYPE),incr)

verify-backup: $(VENV)/.installed
	$(STORIES_BACKUP) verify

restore-drill: $(VENV)/.installed
	$(STORIES_BACKUP) drill $(if $(TARGET_TIME),--target-time "$(TARGET_TIME)")

# Without LIVE=1: into a fresh directory of the backup volume; the running database is not touched.
# With LIVE=1: stops PgBouncer and Postgres, restores over the data, starts them; asks for the stack's name.
restore: $(VENV)/.installed
ifeq ($(LIVE),1)
	@read -p "Overwrite the $(STACK) database with the backup$(if $(TARGET_TIME), at $(TARGET_TIME))? Type the stack name: " answer; \
	  test "$$answer" = "$(STACK)" || { echo "not confirmed; nothing changed" >&2; exit 1; }
	$(DOCKER_OF_STACK) stop $(STACK)-pgbouncer $(STACK)-postgres
	$(STORIES_BACKUP) restore --live --confirm $(STACK) $(if $(TARGET_TIME),--target-time "$(TARGET_TIME)")
	$(DOCKER_OF_STACK) start $(STACK)-postgres $(STACK)-pgbouncer
else
	$(STORIES_BACKUP) restore --into /var/lib/stories-backup/restore-$$(date -u +%Y%m%dT%H%M%SZ) $(if $(TARGET_TIME),--target-time "$(TARGET_TIME)")
endif

bench-restore: $(VENV)/.installed
	PYTHONPATH=. $(PY) -m tools.bench_restore

# The data step of README "Moving a stack from Docker to Kubernetes" on a pgbench database of about 1 GB:
# pg_dump -Fc as the app's role, pg_restore --jobs 2 into a second, empty Postgres 15, the row counts compared.
bench-move: $(VENV)/.installed
	PYTHONPATH=. $(PY) -m tools.bench_move $(if $(SCALE),--scale "$(SCALE)")

# The real Pulumi CLI (not available on CI): see README "Deploying with pulumi up".
preview:
	pulumi preview --stack "$(STACK)" --diff --policy-pack policy

up:
	pulumi up --stack "$(STACK)"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Operator views of a deployed stack, through the docker CLI on its host (host.dockerHost), inside the
# stack's own containers, as the least-privileged role that can do each job (tools/status.py, tools/db.py).
# status: exit 1 when something needs a person. db-top: N statements (20). psql: ROLE=monitor|app, SQL='...'
# runs one statement. logs: SERVICE=<container name without the stack prefix>, N lines (200), FOLLOW=1.
.PHONY: status db-top db-maintain psql logs load

status: $(VENV)/.installed
	@PYTHONPATH=. $(PY) -m tools.status --stack "$(STACK)" --format "$(FORMAT)"

db-top: $(VENV)/.installed
	@PYTHONPATH=. $(PY) -m tools.db top --stack "$(STACK)" --limit "$(or $(N),20)" --format "$(FORMAT)"

db-maintain: $(VENV)/.installed
	@PYTHONPATH=. $(PY) -m tools.db maintain --stack "$(STACK)" --format "$(FORMAT)"

psql: $(VENV)/.installed
	@PYTHONPATH=. $(PY) -m tools.db psql --stack "$(STACK)" --role "$(or $(ROLE),monitor)" $(if $(SQL),--command "$(SQL)")

logs: $(VENV)/.installed
	@PYTHONPATH=. $(PY) -m tools.db logs --stack "$(STACK)" --service "$(SERVICE)" --tail "$(or $(N),200)" $(if $(FOLLOW),--follow)

# The guide's traffic shapes through nginx's published port of a stack on this machine's loopback (locust):
# PROFILE=school-morning|exam-peak, SECONDS (60), BOOK=<a PDF under /books/> (else a test book is put there).
load: $(VENV)/.installed
	@PYTHONPATH=. $(PY) -m tools.load --stack "$(if $(filter command line,$(origin STACK)),$(STACK),e2e)" \
	  --profile "$(or $(PROFILE),school-morning)" --seconds "$(or $(SECONDS),60)" --format "$(FORMAT)" $(if $(BOOK),--book "$(BOOK)")
