"""Replace the catalog token whenever catalog data or team access changes.

The catalog services replace the token themselves. These receivers cover
every other save, delete and many-to-many change, the Django admin and
direct ORM saves included, so no process keeps serving a stale cache (see
``catalog.cache``). ``QuerySet.update()`` and ``bulk_create()`` send no
signals and are not covered.
"""

from django.db.models.signals import m2m_changed, post_delete, post_save

from catalog.cache import bump_catalog_version
from catalog.models import AccessGroup, ModelAlias, ProviderCredential
from teams.models import Team

MEMBERSHIP_CHANGES = frozenset({"post_add", "post_remove", "post_clear"})


def catalog_row_changed(sender, using=None, **kwargs) -> None:
    bump_catalog_version(using=using)


def membership_changed(sender, action, using=None, **kwargs) -> None:
    if action in MEMBERSHIP_CHANGES:
        bump_catalog_version(using=using)


def connect_receivers() -> None:
    """Connect the receivers, once, from CatalogConfig.ready()."""
    for model in (ModelAlias, AccessGroup, ProviderCredential):
        post_save.connect(
            catalog_row_changed, sender=model, dispatch_uid=f"catalog-save-{model}"
        )
        post_delete.connect(
            catalog_row_changed, sender=model, dispatch_uid=f"catalog-delete-{model}"
        )
    # A team deleted and created again under the same id must not inherit
    # the cached access of the old one.
    post_delete.connect(
        catalog_row_changed, sender=Team, dispatch_uid="catalog-delete-team"
    )
    for through in (AccessGroup.aliases.through, Team.access_groups.through):
        m2m_changed.connect(
            membership_changed, sender=through, dispatch_uid=f"catalog-m2m-{through}"
        )
