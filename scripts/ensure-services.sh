#!/usr/bin/env bash
# Reach PostgreSQL and Redis for the test suite; start them if they are
# installed here but not running. Prints what it did.
set -euo pipefail

pg_up() { pg_isready -q -h "${PGHOST:-127.0.0.1}" -p "${PGPORT:-5432}" 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; }

if ! command -v pg_isready >/dev/null 2>&1; then
  echo "services: pg_isready not found; assuming DATABASE_URL points at a reachable server"
elif pg_up; then
  echo "services: PostgreSQL is up"
elif command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { echo "services: PostgreSQL did not start" >&2; exit 1; }
else
  echo "services: PostgreSQL is not reachable and not installed here" >&2; exit 1
fi

if redis_up; then
  echo "services: Redis is up"
elif command -v redis-server >/dev/null 2>&1; then
  echo "services: starting redis-server"
  mkdir -p /tmp/countersign-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/countersign-redis --logfile /tmp/countersign-redis/redis.log
  for _ in $(seq 1 30); do redis_up && break; sleep 0.5; done
  redis_up || { echo "services: Redis did not start" >&2; exit 1; }
else
  echo "services: Redis is not reachable and redis-server is not installed" >&2; exit 1
fi

rabbit_up() { (echo > /dev/tcp/127.0.0.1/5672) >/dev/null 2>&1; }
if rabbit_up; then
  echo "services: RabbitMQ is up"
elif command -v rabbitmq-server >/dev/null 2>&1; then
  echo "services: starting RabbitMQ"
  rabbitmq-server -detached || true
  for _ in $(seq 1 60); do rabbit_up && break; sleep 1; done
  rabbit_up || { echo "services: RabbitMQ did not start" >&2; exit 1; }
else
  echo "services: RabbitMQ is not reachable and not installed; its tests will fail" >&2
fi
