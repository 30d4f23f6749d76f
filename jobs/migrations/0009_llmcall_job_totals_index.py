"""Cover the sums of a team's usage report with the job index of calls.

The new index is built before the old one is dropped, so the calls of a job
stay indexed throughout. On PostgreSQL both happen CONCURRENTLY, so calls are
still recorded while the index builds. SQLite ignores INCLUDE columns.
"""

from django.contrib.postgres.operations import (
    AddIndexConcurrently,
    RemoveIndexConcurrently,
)
from django.db import migrations, models


def online(concurrent_class, plain_class):
    """Return an operation that runs ``concurrent_class`` on PostgreSQL only.

    Other databases run ``plain_class``, which has no CONCURRENTLY.
    """

    class Operation(concurrent_class):
        def base(self, schema_editor):
            postgresql = schema_editor.connection.vendor == "postgresql"
            return concurrent_class if postgresql else plain_class

        def database_forwards(self, app_label, schema_editor, *states):
            base = self.base(schema_editor)
            base.database_forwards(self, app_label, schema_editor, *states)

        def database_backwards(self, app_label, schema_editor, *states):
            base = self.base(schema_editor)
            base.database_backwards(self, app_label, schema_editor, *states)

    return Operation


AddIndexOnline = online(AddIndexConcurrently, migrations.AddIndex)
RemoveIndexOnline = online(RemoveIndexConcurrently, migrations.RemoveIndex)


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("jobs", "0008_llmcall_totals_indexes"),
        ("teams", "0005_virtualkey_prefix_unique"),
    ]

    operations = [
        AddIndexOnline(
            model_name="llmcall",
            index=models.Index(
                fields=["job", "created_at"],
                include=(
                    "id",
                    "error_code",
                    "total_tokens",
                    "client_cost_usd",
                    "provider_cost_usd",
                    "prompt_tokens",
                    "completion_tokens",
                    "latency_ms",
                    "team",
                ),
                name="llmcall_job_totals_idx",
            ),
        ),
        RemoveIndexOnline(
            model_name="llmcall",
            name="llmcall_job_created_idx",
        ),
    ]
