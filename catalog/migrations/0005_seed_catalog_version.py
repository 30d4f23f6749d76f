import uuid

from django.db import migrations
from django.utils import timezone


def create_version_row(apps, schema_editor):
    CatalogVersion = apps.get_model("catalog", "CatalogVersion")
    CatalogVersion.objects.get_or_create(
        id=1, defaults={"token": uuid.uuid4(), "changed_at": timezone.now()}
    )


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0004_catalog_version"),
    ]

    operations = [
        migrations.RunPython(create_version_row, migrations.RunPython.noop),
    ]
