"""Accounts endpoints of API v1: the caller's organization and its API keys.

Thin views: the organization comes from the API key (or the session's active organization),
reads go through org-scoped selectors.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors
from accounts.api.serializers import APIKeySerializer, OrganizationSerializer
from accounts.tenancy import tenant_scoped
from config.api.schema import AUTH_ERRORS, problem_responses


class OrganizationView(APIView):
    @extend_schema(
        operation_id="organization_retrieve",
        tags=["organization"],
        summary="The caller's organization",
        description=(
            "The organization the API key belongs to (or the session's active organization), "
            "with its plan and current subscription period."
        ),
        responses={200: OrganizationSerializer, **problem_responses(*AUTH_ERRORS)},
    )
    @tenant_scoped
    def get(self, request):
        organization = selectors.organization_detail(organization=request.organization)
        return Response(OrganizationSerializer(organization).data)


class APIKeyListView(ListAPIView):
    serializer_class = APIKeySerializer

    def get_queryset(self):
        return selectors.api_key_list(organization=self.request.organization)

    @extend_schema(
        operation_id="api_keys_list",
        tags=["api-keys"],
        summary="The organization's API keys",
        description=(
            "Every key of the caller's organization, revoked ones included, newest first. "
            "Cursor-paginated: follow `next` / `previous`."
        ),
        responses={200: APIKeySerializer(many=True), **problem_responses(400, *AUTH_ERRORS)},
    )
    @tenant_scoped
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)
