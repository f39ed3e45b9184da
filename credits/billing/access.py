"""Who may spend the organization's money: owners and admins (members get 403, outsiders 404,
as everywhere in the app). Staff acting through the admin pass `actor=None`."""

from __future__ import annotations

from accounts.models import Membership, Organization
from config.errors import NotFound, PermissionDenied


def require_manager(*, organization: Organization, actor) -> None:
    if actor is None:
        return
    membership = Membership.objects.filter(organization=organization, user=actor).first()
    if membership is None:
        raise NotFound()
    if not membership.can_manage:
        raise PermissionDenied("Only owners and admins can manage billing.")
