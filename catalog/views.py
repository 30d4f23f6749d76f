"""Admin endpoints for model aliases, access groups and provider credentials.

The catalog services record the audit entries, so these views turn off the
entry that AdminView records of each request.
"""

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from catalog import serializers
from catalog.models import AccessGroup, ModelAlias, ProviderCredential
from catalog.services import (
    create_access_group,
    create_model_alias,
    create_provider_credential,
    delete_access_group,
    delete_model_alias,
    delete_provider_credential,
    set_access_group_aliases,
    set_provider_credential_active,
    update_access_group,
    update_model_alias,
    update_provider_credential,
)
from saasllm.errors import NotFound
from saasllm.views import AdminView, query_filters, validated_data
from teams.models import Team

MODELS_TAG = "admin: model aliases"
ACCESS_GROUPS_TAG = "admin: access groups"
CREDENTIALS_TAG = "admin: provider credentials"


def model_alias_queryset() -> QuerySet:
    groups = AccessGroup.objects.order_by("name")
    return ModelAlias.objects.prefetch_related(
        Prefetch("access_groups", queryset=groups)
    ).order_by("alias")


def get_model_alias_or_404(alias: str) -> ModelAlias:
    model_alias = model_alias_queryset().filter(alias=alias).first()
    if model_alias is None:
        raise NotFound(f"Model alias {alias} not found.")
    return model_alias


def access_group_queryset() -> QuerySet:
    aliases = ModelAlias.objects.order_by("alias")
    teams = Team.objects.order_by("id").only("id")
    return AccessGroup.objects.prefetch_related(
        Prefetch("aliases", queryset=aliases), Prefetch("teams", queryset=teams)
    ).order_by("name")


def get_access_group_or_404(group_name: str) -> AccessGroup:
    group = access_group_queryset().filter(name=group_name).first()
    if group is None:
        raise NotFound(f"Access group {group_name} not found.")
    return group


def get_credential_or_404(credential_id) -> ProviderCredential:
    credential = ProviderCredential.objects.filter(pk=credential_id).first()
    if credential is None:
        raise NotFound(f"Provider credential {credential_id} not found.")
    return credential


def deleted_response(message: str) -> Response:
    return Response(serializers.DeletedSerializer({"message": message}).data)


class CatalogAdminView(AdminView):
    """Base of the catalog's admin views, whose services record audit entries."""

    record_request_audit = False


class ModelAliasCreateView(CatalogAdminView):
    permission_model = ModelAlias

    @extend_schema(
        tags=[MODELS_TAG],
        request=serializers.ModelAliasCreateSerializer,
        responses={201: serializers.ModelAliasSerializer},
    )
    def post(self, request):
        data = validated_data(serializers.ModelAliasCreateSerializer, request.data)

        model_alias = create_model_alias(**data, actor=self.audit_actor)

        return Response(
            serializers.ModelAliasSerializer(
                get_model_alias_or_404(model_alias.alias)
            ).data,
            status=status.HTTP_201_CREATED,
        )


class ModelAliasListView(CatalogAdminView):
    permission_model = ModelAlias

    @extend_schema(
        tags=[MODELS_TAG],
        parameters=[serializers.ModelAliasFilterSerializer],
        responses=serializers.ModelAliasSerializer(many=True),
    )
    def get(self, request):
        filters = query_filters(request, serializers.ModelAliasFilterSerializer)

        aliases = model_alias_queryset()
        if "status" in filters:
            aliases = aliases.filter(status=filters["status"])
        if "provider" in filters:
            aliases = aliases.filter(provider=filters["provider"])
        if "access_group" in filters:
            aliases = aliases.filter(access_groups__name=filters["access_group"])
        return self.paginated_response(aliases, serializers.ModelAliasSerializer)


class ModelAliasDetailView(CatalogAdminView):
    permission_model = ModelAlias

    @extend_schema(tags=[MODELS_TAG], responses=serializers.ModelAliasSerializer)
    def get(self, request, alias: str):
        model_alias = get_model_alias_or_404(alias)
        return Response(serializers.ModelAliasSerializer(model_alias).data)

    @extend_schema(
        tags=[MODELS_TAG],
        request=serializers.ModelAliasUpdateSerializer,
        responses=serializers.ModelAliasSerializer,
        description=(
            "Change an alias; every field is optional and `access_groups` "
            "replaces the groups that contain it."
        ),
    )
    def put(self, request, alias: str):
        model_alias = get_model_alias_or_404(alias)
        data = validated_data(
            serializers.ModelAliasUpdateSerializer,
            request.data,
            instance=model_alias,
            partial=True,
        )

        access_groups = data.pop("access_groups", None)
        update_model_alias(
            model_alias=model_alias,
            fields=data,
            access_groups=access_groups,
            actor=self.audit_actor,
        )

        model_alias = get_model_alias_or_404(alias)
        return Response(serializers.ModelAliasSerializer(model_alias).data)

    @extend_schema(tags=[MODELS_TAG], responses={200: serializers.DeletedSerializer})
    def delete(self, request, alias: str):
        delete_model_alias(
            model_alias=get_model_alias_or_404(alias), actor=self.audit_actor
        )
        return deleted_response(f"Model alias {alias} deleted.")


class AccessGroupCreateView(CatalogAdminView):
    permission_model = AccessGroup

    @extend_schema(
        tags=[ACCESS_GROUPS_TAG],
        request=serializers.AccessGroupCreateSerializer,
        responses={201: serializers.AccessGroupSerializer},
    )
    def post(self, request):
        data = validated_data(serializers.AccessGroupCreateSerializer, request.data)

        group = create_access_group(**data, actor=self.audit_actor)

        return Response(
            serializers.AccessGroupSerializer(get_access_group_or_404(group.name)).data,
            status=status.HTTP_201_CREATED,
        )


class AccessGroupListView(CatalogAdminView):
    permission_model = AccessGroup

    @extend_schema(
        tags=[ACCESS_GROUPS_TAG],
        parameters=[serializers.AccessGroupFilterSerializer],
        responses=serializers.AccessGroupSerializer(many=True),
    )
    def get(self, request):
        filters = query_filters(request, serializers.AccessGroupFilterSerializer)

        groups = access_group_queryset()
        if "status" in filters:
            groups = groups.filter(status=filters["status"])
        return self.paginated_response(groups, serializers.AccessGroupSerializer)


class AccessGroupDetailView(CatalogAdminView):
    permission_model = AccessGroup

    @extend_schema(
        tags=[ACCESS_GROUPS_TAG], responses=serializers.AccessGroupSerializer
    )
    def get(self, request, group_name: str):
        group = get_access_group_or_404(group_name)
        return Response(serializers.AccessGroupSerializer(group).data)

    @extend_schema(
        tags=[ACCESS_GROUPS_TAG],
        request=serializers.AccessGroupUpdateSerializer,
        responses=serializers.AccessGroupSerializer,
    )
    def put(self, request, group_name: str):
        group = get_access_group_or_404(group_name)
        data = validated_data(
            serializers.AccessGroupUpdateSerializer,
            request.data,
            instance=group,
            partial=True,
        )

        update_access_group(group=group, fields=data, actor=self.audit_actor)

        group = get_access_group_or_404(group_name)
        return Response(serializers.AccessGroupSerializer(group).data)

    @extend_schema(
        tags=[ACCESS_GROUPS_TAG],
        responses={200: serializers.DeletedSerializer},
        description="Delete a group; 409 lists the teams that still use it.",
    )
    def delete(self, request, group_name: str):
        delete_access_group(
            group=get_access_group_or_404(group_name), actor=self.audit_actor
        )
        return deleted_response(f"Access group {group_name} deleted.")


class AccessGroupAliasesView(CatalogAdminView):
    permission_model = AccessGroup

    @extend_schema(
        tags=[ACCESS_GROUPS_TAG],
        request=serializers.AccessGroupAliasesSerializer,
        responses=serializers.AccessGroupSerializer,
        description="Replace the aliases of the group.",
    )
    def put(self, request, group_name: str):
        group = get_access_group_or_404(group_name)
        data = validated_data(serializers.AccessGroupAliasesSerializer, request.data)

        set_access_group_aliases(
            group=group, aliases=data["aliases"], actor=self.audit_actor
        )

        group = get_access_group_or_404(group_name)
        return Response(serializers.AccessGroupSerializer(group).data)


class ProviderCredentialCreateView(CatalogAdminView):
    permission_model = ProviderCredential

    @extend_schema(
        tags=[CREDENTIALS_TAG],
        request=serializers.ProviderCredentialCreateSerializer,
        responses={201: serializers.ProviderCredentialSerializer},
        description=(
            "Store an organization's provider API key, encrypted. The key is "
            "never returned; responses carry `has_api_key` only."
        ),
    )
    def post(self, request):
        data = validated_data(
            serializers.ProviderCredentialCreateSerializer, request.data
        )

        credential = create_provider_credential(
            **{"created_by": self.actor, **data}, actor=self.audit_actor
        )

        return Response(
            serializers.ProviderCredentialSerializer(credential).data,
            status=status.HTTP_201_CREATED,
        )


class ProviderCredentialListView(CatalogAdminView):
    permission_model = ProviderCredential

    @extend_schema(
        tags=[CREDENTIALS_TAG],
        parameters=[serializers.ProviderCredentialFilterSerializer],
        responses=serializers.ProviderCredentialSerializer(many=True),
    )
    def get(self, request):
        filters = query_filters(request, serializers.ProviderCredentialFilterSerializer)

        credentials = ProviderCredential.objects.order_by(
            "organization_id", "provider", "name", "id"
        )
        if "organization_id" in filters:
            credentials = credentials.filter(organization_id=filters["organization_id"])
        if "provider" in filters:
            credentials = credentials.filter(provider=filters["provider"])
        if filters["active_only"]:
            credentials = credentials.filter(is_active=True)
        return self.paginated_response(
            credentials, serializers.ProviderCredentialSerializer
        )


class ProviderCredentialDetailView(CatalogAdminView):
    permission_model = ProviderCredential

    @extend_schema(
        tags=[CREDENTIALS_TAG], responses=serializers.ProviderCredentialSerializer
    )
    def get(self, request, credential_id):
        credential = get_credential_or_404(credential_id)
        return Response(serializers.ProviderCredentialSerializer(credential).data)

    @extend_schema(
        tags=[CREDENTIALS_TAG],
        request=serializers.ProviderCredentialUpdateSerializer,
        responses=serializers.ProviderCredentialSerializer,
        description="Change a credential; a new `api_key` is encrypted.",
    )
    def put(self, request, credential_id):
        credential = get_credential_or_404(credential_id)
        data = validated_data(
            serializers.ProviderCredentialUpdateSerializer,
            request.data,
            instance=credential,
            partial=True,
        )

        api_key = data.pop("api_key", None)
        fields = {"updated_by": self.actor, **data}
        update_provider_credential(
            credential=credential,
            fields=fields,
            api_key=api_key,
            actor=self.audit_actor,
        )

        return Response(serializers.ProviderCredentialSerializer(credential).data)

    @extend_schema(
        tags=[CREDENTIALS_TAG], responses={200: serializers.DeletedSerializer}
    )
    def delete(self, request, credential_id):
        delete_provider_credential(
            credential=get_credential_or_404(credential_id), actor=self.audit_actor
        )
        return deleted_response(f"Provider credential {credential_id} deleted.")


class ProviderCredentialActivateView(CatalogAdminView):
    permission_model = ProviderCredential
    is_active = True

    @extend_schema(
        tags=[CREDENTIALS_TAG],
        request=None,
        responses=serializers.ProviderCredentialSerializer,
    )
    def put(self, request, credential_id):
        credential = get_credential_or_404(credential_id)

        set_provider_credential_active(
            credential=credential,
            is_active=self.is_active,
            updated_by=self.actor,
            actor=self.audit_actor,
        )

        return Response(serializers.ProviderCredentialSerializer(credential).data)


class ProviderCredentialDeactivateView(ProviderCredentialActivateView):
    is_active = False
