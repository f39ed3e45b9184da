"""Teams in API v1 (`/api/v1/teams/…`), for the caller's organization only: another
organization's team is a 404. Anyone acting for the organization reads them; owners and admins
signed in change them (`accounts.teams`), an API key never does."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import teams
from accounts.api.permissions import request_api_key
from accounts.models import Team, User
from accounts.tenancy import tenant_scoped
from config.api.schema import AUTH_ERRORS, problem_responses
from config.errors import NotFound, PermissionDenied

TAGS = ["teams"]
SLUG = OpenApiParameter("slug", str, OpenApiParameter.PATH, description="The team's slug.")
USER_ID = OpenApiParameter("user_id", int, OpenApiParameter.PATH, description="A member's id.")


class TeamMemberSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email"]


class TeamSerializer(serializers.ModelSerializer):
    members = serializers.SerializerMethodField()

    class Meta:
        model = Team
        fields = ["slug", "name", "members", "created_at"]

    def get_members(self, team) -> list[dict]:
        users = teams.team_members(team=team)
        return TeamMemberSerializer(users, many=True).data


class TeamCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    slug = serializers.SlugField(max_length=50, required=False)


class TeamUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class TeamMemberAddSerializer(serializers.Serializer):
    user = serializers.IntegerField(help_text="The id of a member of the organization.")


def _manager(request) -> User:
    user = request.user
    if request_api_key(request) is not None or user is None or not user.is_authenticated:
        raise PermissionDenied("Teams are changed by an owner or admin signed in, not by API key.")
    return user


def _team(request, slug: str) -> Team:
    team = Team.objects.filter(organization=request.organization, slug=slug).first()
    if team is None:
        raise NotFound("No such team.")
    return team


def _member(request, user_id) -> User:
    user = User.objects.filter(pk=user_id, memberships__organization=request.organization).first()
    if user is None:
        raise NotFound("No such member.")
    return user


class TeamListView(APIView):
    @extend_schema(
        operation_id="teams_list",
        tags=TAGS,
        summary="The organization's teams and their members",
        responses={200: TeamSerializer(many=True), **problem_responses(*AUTH_ERRORS)},
    )
    @tenant_scoped
    def get(self, request):
        items = teams.team_list(organization=request.organization)
        return Response({"results": TeamSerializer(items, many=True).data})

    @extend_schema(
        operation_id="teams_create",
        tags=TAGS,
        summary="Add a team (owners and admins)",
        description="`slug` defaults to the name, slugified; unique in the organization.",
        request=TeamCreateSerializer,
        responses={201: TeamSerializer, **problem_responses(400, *AUTH_ERRORS)},
    )
    def post(self, request):
        actor = _manager(request)
        data = TeamCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        team = teams.team_create(
            organization=request.organization, actor=actor, **data.validated_data
        )
        return Response(TeamSerializer(team).data, status=status.HTTP_201_CREATED)


class TeamDetailView(APIView):
    @extend_schema(
        operation_id="teams_retrieve",
        tags=TAGS,
        summary="One team",
        parameters=[SLUG],
        responses={200: TeamSerializer, **problem_responses(404, *AUTH_ERRORS)},
    )
    @tenant_scoped
    def get(self, request, slug):
        return Response(TeamSerializer(_team(request, slug)).data)

    @extend_schema(
        operation_id="teams_update",
        tags=TAGS,
        summary="Rename a team (owners and admins)",
        parameters=[SLUG],
        request=TeamUpdateSerializer,
        responses={200: TeamSerializer, **problem_responses(400, 404, *AUTH_ERRORS)},
    )
    def patch(self, request, slug):
        actor = _manager(request)
        team = _team(request, slug)
        data = TeamUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        team = teams.team_rename(team=team, name=data.validated_data["name"], actor=actor)
        return Response(TeamSerializer(team).data)

    @extend_schema(
        operation_id="teams_destroy",
        tags=TAGS,
        summary="Delete a team and its budget (owners and admins)",
        parameters=[SLUG],
        responses={204: None, **problem_responses(404, *AUTH_ERRORS)},
    )
    def delete(self, request, slug):
        actor = _manager(request)
        teams.team_delete(team=_team(request, slug), actor=actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TeamMemberListView(APIView):
    @extend_schema(
        operation_id="teams_members_add",
        tags=TAGS,
        summary="Add a member of the organization to a team (owners and admins)",
        parameters=[SLUG],
        request=TeamMemberAddSerializer,
        responses={200: TeamSerializer, **problem_responses(400, 404, *AUTH_ERRORS)},
    )
    def post(self, request, slug):
        actor = _manager(request)
        team = _team(request, slug)
        data = TeamMemberAddSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        teams.team_member_add(
            team=team, user=_member(request, data.validated_data["user"]), actor=actor
        )
        return Response(TeamSerializer(team).data)


class TeamMemberDetailView(APIView):
    @extend_schema(
        operation_id="teams_members_remove",
        tags=TAGS,
        summary="Remove a member from a team (owners and admins)",
        parameters=[SLUG, USER_ID],
        responses={204: None, **problem_responses(404, *AUTH_ERRORS)},
    )
    def delete(self, request, slug, user_id):
        actor = _manager(request)
        teams.team_member_remove(
            team=_team(request, slug), user=_member(request, user_id), actor=actor
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
