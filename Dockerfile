# Countersign: one image for web, worker and beat (see docker-compose.yml).

# The build context may hold a local venv, SQLite data with a local admin, or a .env with
# secrets; this stage drops them so none of it reaches the final image.
FROM python:3.11-slim AS source
WORKDIR /src
COPY . .
RUN rm -rf .venv data .env .git .pytest_cache .mypy_cache .ruff_cache \
    && find . -name __pycache__ -prune -exec rm -rf {} +

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    COUNTERSIGN_DATA_DIR=/data \
    COUNTERSIGN_WORKSPACE_ROOT=/data/workspaces \
    STATIC_ROOT=/app/static

RUN groupadd --system --gid 1000 countersign \
    && useradd --system --uid 1000 --gid countersign --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin countersign

WORKDIR /app

# Dependencies first, so code changes do not reinstall them. Every package is hash-checked.
COPY requirements.lock .
RUN pip install --require-hashes -r requirements.lock

# The code stays owned by root: the app user can read it but not change it.
COPY --from=source /src /app
# The only writable places. Volumes mounted on them (workspaces, beat schedule) start out
# owned by the app user.
RUN mkdir -p /data/workspaces /data/beat /app/static \
    && chown -R countersign:countersign /data /app/static

USER countersign

# Static files for the admin, collected into STATIC_ROOT. The key only lets settings load.
RUN SECRET_KEY=collectstatic-only DEBUG=0 python manage.py collectstatic --noinput

EXPOSE 8000
# The API on threads, event streams on the event loop (config/asgi.py); see docker-compose.yml.
CMD ["uvicorn", "config.asgi:application", "--host", "0.0.0.0", "--port", "8000", \
     "--http", "httptools", "--loop", "uvloop"]
