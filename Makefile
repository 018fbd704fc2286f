# The README's two commands are `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha256sum requirements.lock | cut -c1-12)

TEST_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/test)
TEST_REDIS_URL ?= $(or $(REDIS_URL),redis://127.0.0.1:6379/0)

.PHONY: venv run test lint bench bench-api bench-streaming bench-workflows bench-recovery services lock clean

$(STAMP): requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	rm -f $(VENV)/.installed-* && touch $(STAMP)

venv: $(STAMP)

## Set up (venv, database) and start web + worker + beat (+ a broker if needed).
run: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap
	$(PY) manage.py runstack

## Install from the lock file, reach PostgreSQL and Redis, run the whole suite.
test: venv services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	CELERY_BROKER_URL=$(or $(CELERY_BROKER_URL),$(TEST_REDIS_URL)) \
	$(PY) -m pytest $(PYTEST_ARGS)

services:
	./scripts/ensure-services.sh
	./scripts/ensure-browser.sh
	./scripts/ensure-promtool.sh

## The checks the suite runs first (tests/test_code_quality.py), on their own.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports

bench: venv services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	CELERY_BROKER_URL=$(or $(CELERY_BROKER_URL),$(TEST_REDIS_URL)) \
	$(PY) bench/engine.py

bench-streaming: venv services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	CELERY_BROKER_URL=$(or $(CELERY_BROKER_URL),$(TEST_REDIS_URL)) \
	$(PY) bench/streaming.py

bench-api: venv services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	CELERY_BROKER_URL=$(or $(CELERY_BROKER_URL),$(TEST_REDIS_URL)) \
	$(PY) bench/api.py

bench-workflows: venv services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	CELERY_BROKER_URL=$(or $(CELERY_BROKER_URL),$(TEST_REDIS_URL)) \
	$(PY) bench/workflows.py

## Its own PostgreSQL cluster and Redis server, restarted under load.
bench-recovery: venv services
	$(PY) bench/recovery.py

## Re-pin dependencies after editing pyproject.toml.
lock: venv
	$(VENV)/bin/pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 \
		--generate-hashes -o requirements.lock

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
