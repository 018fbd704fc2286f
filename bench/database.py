"""A fresh PostgreSQL database of the benchmark's own, on the server DATABASE_URL names."""

import sys
from urllib.parse import urlsplit, urlunsplit


def fresh_database(url: str, name: str) -> str:
    """DROP and CREATE `name` (same server and credentials as `url`); return its URL.

    Fresh each run: figures should not depend on what earlier runs left behind.
    """
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        sys.exit(f"the benchmarks need PostgreSQL; DATABASE_URL is {parts.scheme}://…")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    identifier = sql.Identifier(name)
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(identifier))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(identifier))
    return urlunsplit(parts._replace(path=f"/{name}"))
