"""Migration operations for tables that may be large when an upgrade reaches them."""

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently as PostgresConcurrently
from django.db.migrations import AddIndex


class AddIndexConcurrently(PostgresConcurrently):
    """CREATE INDEX CONCURRENTLY on PostgreSQL: jobs and decisions go on being written
    while a big table is indexed (a plain CREATE INDEX blocks every write to it until the
    index is built). A plain CREATE INDEX elsewhere: SQLite has no other kind. The
    migration must say `atomic = False`."""

    def database_forwards(self, app_label: str, schema_editor: Any, *states: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, *states)
        else:
            AddIndex.database_forwards(self, app_label, schema_editor, *states)

    def database_backwards(self, app_label: str, schema_editor: Any, *states: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, *states)
        else:
            AddIndex.database_backwards(self, app_label, schema_editor, *states)
