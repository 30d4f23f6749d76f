"""Covering indexes for the call reports, and statistics on the UTC day of a call.

The statistics let PostgreSQL estimate how many UTC days a range of calls
spans, so the daily report groups them in a hash table instead of sorting
every row. SQLite has no statistics objects and ignores INCLUDE columns.
"""

from django.db import migrations, models

CREATE_DAY_STATISTICS = (
    "CREATE STATISTICS IF NOT EXISTS llmcall_utc_day_stats "
    "ON ((created_at AT TIME ZONE 'UTC')::date) FROM jobs_llmcall"
)
DROP_DAY_STATISTICS = "DROP STATISTICS IF EXISTS llmcall_utc_day_stats"


def create_day_statistics(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE_DAY_STATISTICS)


def drop_day_statistics(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_DAY_STATISTICS)


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0007_llmcall_routing_and_streaming"),
        ("teams", "0005_virtualkey_prefix_unique"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="llmcall",
            index=models.Index(
                fields=["-created_at"],
                include=(
                    "id",
                    "error_code",
                    "total_tokens",
                    "client_cost_usd",
                    "provider_cost_usd",
                ),
                name="llmcall_created_totals_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="llmcall",
            index=models.Index(
                fields=["organization", "-created_at"],
                include=(
                    "id",
                    "error_code",
                    "total_tokens",
                    "client_cost_usd",
                    "provider_cost_usd",
                    "team",
                    "alias",
                    "provider",
                    "provider_model",
                ),
                name="llmcall_org_totals_idx",
            ),
        ),
        migrations.RemoveIndex(model_name="llmcall", name="llmcall_org_created_idx"),
        migrations.RemoveIndex(model_name="llmcall", name="llmcall_created_idx"),
        migrations.RunPython(create_day_statistics, drop_day_statistics),
    ]
