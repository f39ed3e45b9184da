"""Teams: groups of an organization's members (budgets apply per team: docs/budgets.md).

Services (owners and admins only, each audited like membership changes) and selectors.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import Count, QuerySet
from django.utils.text import slugify

from accounts.models import Membership, Organization, Team, TeamMembership, User
from accounts.services import audit_record
from config.errors import NotFound, PermissionDenied, ValidationError


def manager_require(*, organization: Organization, actor: User) -> Membership:
    """The actor's membership when they are an owner or admin of `organization`; NotFound for
    a non-member (another tenant's objects don't exist for them), PermissionDenied otherwise."""
    membership = Membership.objects.filter(organization=organization, user=actor).first()
    if membership is None:
        raise NotFound()
    if not membership.can_manage:
        raise PermissionDenied("Only owners and admins can manage teams and budgets.")
    return membership


# --- Selectors --------------------------------------------------------------------------------


def team_list(*, organization: Organization) -> QuerySet[Team]:
    return Team.objects.filter(organization=organization).annotate(
        member_count=Count("memberships")
    )


def team_get(*, organization: Organization, team_id) -> Team:
    try:
        return Team.objects.get(organization=organization, pk=int(team_id))
    except (Team.DoesNotExist, ValueError, TypeError):
        raise NotFound("No such team.") from None


def team_members(*, team: Team) -> QuerySet[User]:
    return User.objects.filter(team_memberships__team=team).order_by("email")


# --- Services ---------------------------------------------------------------------------------


def _clean(*, name: str, slug: str | None) -> tuple[str, str]:
    name = " ".join((name or "").split())
    if not name or len(name) > 100:
        raise ValidationError(
            "A team needs a name of 1–100 characters.", errors={"name": ["1–100 characters."]}
        )
    slug = (slug or "").strip() or slugify(name)[:50].strip("-")
    if not slug or len(slug) > 50 or slug != slugify(slug) or slug.startswith("-"):
        raise ValidationError(
            "The team's slug may use lowercase letters, digits and hyphens (up to 50).",
            errors={"slug": ["Lowercase letters, digits and hyphens."]},
        )
    return name, slug


@transaction.atomic
def team_create(
    *, organization: Organization, name: str, actor: User, slug: str | None = None
) -> Team:
    manager_require(organization=organization, actor=actor)
    name, slug = _clean(name=name, slug=slug)
    if Team.objects.filter(organization=organization, slug=slug).exists():
        raise ValidationError("A team with this slug exists.", errors={"slug": ["Taken."]})
    try:
        with transaction.atomic():
            team = Team.objects.create(organization=organization, name=name, slug=slug)
    except IntegrityError:
        raise ValidationError(
            "A team with this slug exists.", errors={"slug": ["Taken."]}
        ) from None
    audit_record(
        action="team.created",
        organization=organization,
        actor=actor,
        target=team,
        data={"slug": slug, "name": name},
    )
    return team


@transaction.atomic
def team_rename(*, team: Team, name: str, actor: User) -> Team:
    manager_require(organization=team.organization, actor=actor)
    name, _ = _clean(name=name, slug=team.slug)
    previous = team.name
    Team.objects.filter(pk=team.pk).update(name=name)
    team.name = name
    audit_record(
        action="team.renamed",
        organization=team.organization,
        actor=actor,
        target=team,
        data={"from": previous, "to": name},
    )
    return team


@transaction.atomic
def team_delete(*, team: Team, actor: User) -> None:
    """Delete a team with its memberships and its budget (its open reservations stay on the
    holds' records and no longer count anywhere)."""
    manager_require(organization=team.organization, actor=actor)
    audit_record(
        action="team.deleted",
        organization=team.organization,
        actor=actor,
        target=team,
        data={"slug": team.slug, "name": team.name},
    )
    team.delete()


@transaction.atomic
def team_member_add(*, team: Team, user: User, actor: User) -> TeamMembership:
    manager_require(organization=team.organization, actor=actor)
    if not Membership.objects.filter(organization=team.organization, user=user).exists():
        raise ValidationError(
            "Only members of the organization can join its teams.",
            errors={"user": ["Not a member of the organization."]},
        )
    membership, created = TeamMembership.objects.get_or_create(team=team, user=user)
    if created:
        audit_record(
            action="team.member_added",
            organization=team.organization,
            actor=actor,
            target=team,
            data={"user": user.pk, "email": user.email},
        )
    return membership


@transaction.atomic
def team_member_remove(*, team: Team, user: User, actor: User) -> None:
    manager_require(organization=team.organization, actor=actor)
    deleted, _ = TeamMembership.objects.filter(team=team, user=user).delete()
    if deleted:
        audit_record(
            action="team.member_removed",
            organization=team.organization,
            actor=actor,
            target=team,
            data={"user": user.pk, "email": user.email},
        )
