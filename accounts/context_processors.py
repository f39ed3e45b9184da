from accounts.selectors import organizations_for_user


def organization(request) -> dict:
    """The active organization, the user's membership in it, and the switcher's choices."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "current_membership": getattr(request, "membership", None),
        "current_organization": getattr(request, "organization", None),
        "user_organizations": organizations_for_user(user=user),
    }
