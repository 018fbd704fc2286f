"""A fresh PostgreSQL database of the benchmark's own, on the server DATABASE_URL names."""

import sys
from urllib.parse import urlsplit, urlunsplit


def _maintenance(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        sys.exit(f"the benchmarks need PostgreSQL; DATABASE_URL is {parts.scheme}://…")
    return urlunsplit(parts._replace(path="/postgres"))


def drop_database(url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(_maintenance(url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def fresh_database(url: str, name: str) -> str:
    """DROP and CREATE `name` (same server and credentials as `url`); return its URL.

    Fresh each run: figures should not depend on what earlier runs left behind.
    """
    import psycopg
    from psycopg import sql

    drop_database(url, name)
    with psycopg.connect(_maintenance(url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
