"""Cover the sums of a team's usage report with the job index of calls.

The new index is built before the old one is dropped, so the calls of a job
stay indexed throughout. SQLite ignores INCLUDE columns.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0008_llmcall_totals_indexes"),
        ("teams", "0005_virtualkey_prefix_unique"),
    ]

    operations = [
        migrations.AddIndex(
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
        migrations.RemoveIndex(
            model_name="llmcall",
            name="llmcall_job_created_idx",
        ),
    ]
