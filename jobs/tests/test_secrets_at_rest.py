from django.apps import apps
from django.db import connection

from jobs.tests.conftest import post_json

PROVIDER_SECRET = "sk-provider-secret-abcdef123456"


def dump_all_rows() -> str:
    """Every row of every table of the project's apps, as raw text."""
    chunks = []
    with connection.cursor() as cursor:
        for model in apps.get_models():
            if model._meta.app_label not in {"teams", "catalog", "jobs"}:
                continue
            cursor.execute(
                f"SELECT * FROM {connection.ops.quote_name(model._meta.db_table)}"
            )
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


def test_no_plaintext_keys_in_database(
    client, team, admin_headers, create_job, call_job
):
    extra = post_json(
        client, f"/api/teams/{team.id}/keys", {"name": "ci"}, admin_headers
    )
    job_id = create_job()
    call_job(job_id)

    rows = dump_all_rows()

    assert team.key not in rows
    assert team.key[3:] not in rows
    assert PROVIDER_SECRET not in rows
    assert extra.status_code == 201
    assert extra.json()["virtual_key"] not in rows


def test_key_appears_only_in_its_creation_response(client, team, admin_headers):
    created = post_json(
        client, f"/api/teams/{team.id}/keys", {"name": "ci"}, admin_headers
    )
    plaintext = created.json()["virtual_key"]

    later = [
        client.get(f"/api/teams/{team.id}", **admin_headers),
        client.get("/api/teams", **admin_headers),
    ]

    assert created.status_code == 201
    for response in later:
        assert response.status_code == 200
        assert plaintext not in response.content.decode()
        assert team.key not in response.content.decode()
