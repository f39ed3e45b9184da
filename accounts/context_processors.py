from accounts.selectors import organizations_for_user


def organization(request) -> dict:
    """The active organization, the user's membership in it, and the switcher's choices."""
    from django.conf import settings

    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"site_name": settings.SITE_NAME}
    return {
        "site_name": settings.SITE_NAME,
        "current_membership": getattr(request, "membership", None),
        "current_organization": getattr(request, "organization", None),
        "user_organizations": organizations_for_user(user=user),
    }
