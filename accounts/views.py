"""Web views for accounts: sign up, dashboard, organization switcher, members and API keys.

Views are thin: they validate forms, call `accounts.services` (writes) and `accounts.selectors`
(reads, always scoped to `request.organization`) and turn service errors into form errors,
messages, 403 or 404. Another tenant's object is a 404. Every action works as a plain POST
followed by a redirect; htmx requests get the page fragment back instead.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts import keys, selectors, services
from accounts import signup as signup_flow
from accounts.forms import (
    APIKeyCreateForm,
    EmailAuthenticationForm,
    InviteAwarePasswordResetForm,
    MemberAddForm,
    OrganizationForm,
    OrganizationSwitchForm,
    RoleChangeForm,
    SignupForm,
    SignupPasswordForm,
)
from accounts.middleware import SESSION_KEY
from accounts.models import Organization, Role
from accounts.signals import organization_signed_up
from accounts.tenancy import tenant_scoped
from config.errors import NotFound, PermissionDenied, RateLimited, ValidationError
from config.web.decorators import organization_required
from config.web.forms import add_service_errors
from config.web.http import client_address, safe_next

# --- Helpers ----------------------------------------------------------------------------------

ROLE_WITH_ARTICLE = {Role.OWNER: "an owner", Role.ADMIN: "an admin", Role.MEMBER: "a member"}


def _not_found(exc: NotFound) -> Http404:
    return Http404(exc.detail)


def _forbidden(exc: PermissionDenied) -> DjangoPermissionDenied:
    return DjangoPermissionDenied(exc.detail)


def _subscription(organization):
    try:
        return organization.subscription
    except ObjectDoesNotExist:
        return None


def _set_active_organization(request: HttpRequest, organization) -> None:
    request.session[SESSION_KEY] = organization.pk


# --- Sign up, log in, password reset ----------------------------------------------------------


def signup(request: HttpRequest) -> HttpResponse:
    """Step 1 (accounts.signup): the same answer, "check your email", whether or not the
    address has an account."""
    if request.user.is_authenticated:
        return redirect("dashboard")
    form = SignupForm(request.POST or None, initial={"ref": request.GET.get("ref", "")[:16]})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            signup_flow.user_signup_request(
                email=data["email"],
                name=data["name"],
                organization_name=data["organization_name"],
                client_address=client_address(request),
                referral_code=data.get("ref", ""),
            )
        except RateLimited as exc:
            form.add_error(None, exc.detail)
            response = render(request, "accounts/signup.html", {"form": form}, status=429)
            for header, value in exc.headers.items():
                response[header] = value
            return response
        return redirect("signup_sent")
    return render(request, "accounts/signup.html", {"form": form})


def signup_sent(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/signup_sent.html")


def signup_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """Step 2, from the emailed link: choose a password; the account and its organization are
    created and the person is signed in."""
    try:
        pending = signup_flow.signup_token_read(token=token)
    except ValidationError as exc:
        response = render(
            request, "accounts/signup_confirm.html", {"invalid": exc.detail}, status=400
        )
        add_never_cache_headers(response)
        return response
    form = SignupPasswordForm(request.POST or None, email=pending["email"], name=pending["name"])
    if request.method == "POST" and form.is_valid():
        try:
            user, organization = services.user_signup(
                email=pending["email"],
                password=form.cleaned_data["password1"],
                organization_name=pending["organization_name"],
                name=pending["name"],
            )
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            organization_signed_up.send(
                sender=Organization,
                organization=organization,
                referral_code=pending.get("referral_code", ""),
            )
            if request.user.is_authenticated:
                logout(request)
            login(request, user, backend="accounts.backends.ThrottledModelBackend")
            _set_active_organization(request, organization)
            messages.success(request, f"Welcome! {organization.name} is ready on the free plan.")
            return redirect("dashboard")
    response = render(request, "accounts/signup_confirm.html", {"form": form, **pending})
    add_never_cache_headers(response)
    return response


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = EmailAuthenticationForm
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    """POST only (Django's LogoutView refuses GET)."""


class PasswordResetView(auth_views.PasswordResetView):
    template_name = "accounts/password_reset_form.html"
    form_class = InviteAwarePasswordResetForm
    email_template_name = "accounts/emails/password_reset_email.txt"
    subject_template_name = "accounts/emails/password_reset_subject.txt"
    success_url = reverse_lazy("password_reset_done")


class PasswordResetDoneView(auth_views.PasswordResetDoneView):
    template_name = "accounts/password_reset_done.html"


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    success_url = reverse_lazy("password_reset_complete")


class PasswordResetCompleteView(auth_views.PasswordResetCompleteView):
    template_name = "accounts/password_reset_complete.html"


# --- Organizations ----------------------------------------------------------------------------


@login_required
def organization_create(request: HttpRequest) -> HttpResponse:
    """Create an organization on the free plan, owned by the user. Users who belong to no
    organization (e.g. removed from their last one) land here."""
    form = OrganizationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            organization = services.organization_create(
                name=form.cleaned_data["name"],
                plan=selectors.plan_get(slug=services.FREE_PLAN_SLUG),
                owner=request.user,
                actor=request.user,
            )
        except ValidationError as exc:
            add_service_errors(form, exc, field_map={"slug": "name"})
        else:
            _set_active_organization(request, organization)
            messages.success(request, f"Created {organization.name} on the free plan.")
            return redirect("dashboard")
    return render(
        request,
        "accounts/organization_create.html",
        {"form": form, "has_organization": getattr(request, "organization", None) is not None},
    )


@require_POST
@login_required
def organization_switch(request: HttpRequest) -> HttpResponse:
    form = OrganizationSwitchForm(request.POST)
    if not form.is_valid():
        raise Http404("No such organization.")
    try:
        organization = selectors.organization_for_user(
            user=request.user, organization_id=form.cleaned_data["organization"]
        )
    except NotFound as exc:
        raise _not_found(exc) from exc
    _set_active_organization(request, organization)
    messages.info(request, f"Switched to {organization.name}.")
    return redirect(safe_next(request, reverse("dashboard")))


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """The organization's dashboard. Staff who belong to no organization land on the staff
    overview instead (the "no organization" page is for customers)."""
    if getattr(request, "organization", None) is None and request.user.is_staff:
        return redirect("staff:home")
    return _organization_dashboard(request)


@organization_required
@tenant_scoped
def _organization_dashboard(request: HttpRequest) -> HttpResponse:
    """Plan, role and credits; the latest jobs and the period's usage chart (their apps'
    template tags); a Generate button and the next plan up."""
    organization = request.organization
    subscription = _subscription(organization)
    return render(
        request,
        "accounts/dashboard.html",
        {
            "organization": organization,
            "membership": request.membership,
            "subscription": subscription,
            "upgrade_plan": selectors.plan_upgrade_for(
                plan=subscription.plan if subscription else None
            ),
        },
    )


# --- Members ----------------------------------------------------------------------------------


def _members_context(request: HttpRequest, *, add_form: MemberAddForm | None = None) -> dict:
    membership = request.membership
    members = list(selectors.membership_list(organization=request.organization))
    is_owner = membership.role == Role.OWNER
    owner_count = sum(1 for m in members if m.role == Role.OWNER)
    rows = []
    for member in members:
        is_self = member.user_id == request.user.pk
        last_owner = member.role == Role.OWNER and owner_count <= 1
        can_edit = membership.can_manage and not is_self and (is_owner or member.role != Role.OWNER)
        rows.append(
            {
                "membership": member,
                "is_self": is_self,
                "last_owner": last_owner,
                "can_change_role": can_edit
                or (is_self and membership.can_manage and not last_owner),
                "can_remove": can_edit,
                "can_leave": is_self and not last_owner,
            }
        )
    role_choices = [c for c in Role.choices if is_owner or c[0] != Role.OWNER]
    if membership.can_manage and add_form is None:
        add_form = MemberAddForm(can_add_owner=is_owner)
    return {
        "organization": request.organization,
        "membership": membership,
        "rows": rows,
        "role_choices": role_choices,
        "add_form": add_form,
    }


def _members_response(request: HttpRequest) -> HttpResponse:
    """After a POST: the refreshed table for htmx, a redirect otherwise."""
    if request.htmx:
        return render(request, "accounts/partials/members_table.html", _members_context(request))
    return redirect("members")


@organization_required
@tenant_scoped
def members(request: HttpRequest) -> HttpResponse:
    """List members; owners and admins add people by email (POST)."""
    add_form = None
    if request.method == "POST":
        add_form = MemberAddForm(request.POST, can_add_owner=request.membership.role == Role.OWNER)
        if add_form.is_valid():
            try:
                membership, invited = services.membership_add(
                    organization=request.organization,
                    email=add_form.cleaned_data["email"],
                    role=add_form.cleaned_data["role"],
                    actor=request.user,
                )
            except PermissionDenied as exc:
                raise _forbidden(exc) from exc
            except ValidationError as exc:
                add_service_errors(add_form, exc)
            else:
                email = membership.user.email
                text = f"Added {email} as {ROLE_WITH_ARTICLE[membership.role]}."
                if invited:
                    text += f" They had no account yet: we emailed {email} an invitation link."
                else:
                    text += " We emailed them to let them know."
                messages.success(request, text)
                return redirect("members")
    return render(request, "accounts/members.html", _members_context(request, add_form=add_form))


@require_POST
@organization_required
def member_change_role(request: HttpRequest, membership_id: int) -> HttpResponse:
    try:
        membership = selectors.membership_get(
            organization=request.organization, membership_id=membership_id
        )
    except NotFound as exc:
        raise _not_found(exc) from exc
    form = RoleChangeForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a valid role.")
        return _members_response(request)
    try:
        membership = services.membership_change_role(
            membership=membership, role=form.cleaned_data["role"], actor=request.user
        )
    except PermissionDenied as exc:
        raise _forbidden(exc) from exc
    except ValidationError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(
            request,
            f"{membership.user.email} is now {ROLE_WITH_ARTICLE[membership.role]}.",
        )
    if membership.user_id == request.user.pk and request.htmx:
        # Your own role changed: the page's controls change too.
        return HttpResponseClientRedirect(reverse("members"))
    return _members_response(request)


@require_POST
@organization_required
def member_remove(request: HttpRequest, membership_id: int) -> HttpResponse:
    """Remove a member, or leave the organization when it is your own membership."""
    try:
        membership = selectors.membership_get(
            organization=request.organization, membership_id=membership_id
        )
    except NotFound as exc:
        raise _not_found(exc) from exc
    leaving = membership.user_id == request.user.pk
    email = membership.user.email
    try:
        services.membership_remove(membership=membership, actor=request.user)
    except PermissionDenied as exc:
        raise _forbidden(exc) from exc
    except ValidationError as exc:
        messages.error(request, exc.detail)
        return _members_response(request)
    if leaving:
        request.session.pop(SESSION_KEY, None)
        messages.success(request, f"You left {request.organization.name}.")
        if request.htmx:
            return HttpResponseClientRedirect(reverse("dashboard"))
        return redirect("dashboard")
    messages.success(request, f"Removed {email} from {request.organization.name}.")
    return _members_response(request)


# --- API keys ---------------------------------------------------------------------------------


def _api_keys_context(request: HttpRequest, *, form: APIKeyCreateForm | None = None) -> dict:
    subscription = _subscription(request.organization)
    plan = subscription.plan if subscription else None
    can_manage = request.membership.can_manage
    return {
        "organization": request.organization,
        "membership": request.membership,
        "api_keys": selectors.api_key_list(organization=request.organization),
        "plan": plan,
        "api_access": bool(plan and plan.api_access),
        "form": form if form is not None else (APIKeyCreateForm() if can_manage else None),
        "key_prefix": keys.API_KEY_PREFIX,
    }


@organization_required
@tenant_scoped
def api_keys(request: HttpRequest) -> HttpResponse:
    """List keys; owners and admins create one (POST). The new key's full value is rendered in
    the response to that POST only: it is never stored (only its hash) nor shown again."""
    if request.method != "POST":
        return render(request, "accounts/api_keys.html", _api_keys_context(request))
    form = APIKeyCreateForm(request.POST)
    if form.is_valid():
        try:
            api_key, raw_key = services.api_key_create(
                organization=request.organization,
                name=form.cleaned_data["name"],
                actor=request.user,
            )
        except PermissionDenied as exc:
            raise _forbidden(exc) from exc
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            context = _api_keys_context(request, form=APIKeyCreateForm())
            context.update({"new_key": raw_key, "new_key_obj": api_key})
            response = render(request, "accounts/api_keys.html", context)
            add_never_cache_headers(response)
            return response
    return render(request, "accounts/api_keys.html", _api_keys_context(request, form=form))


@require_POST
@organization_required
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    try:
        api_key = selectors.api_key_get(organization=request.organization, key_id=key_id)
    except NotFound as exc:
        raise _not_found(exc) from exc
    try:
        services.api_key_revoke(api_key=api_key, actor=request.user)
    except PermissionDenied as exc:
        raise _forbidden(exc) from exc
    messages.success(request, f"Revoked the key “{api_key.name}”. It no longer works.")
    if request.htmx:
        # The page may still show this key's secret in its "copy it now" box: the fragment
        # replaces that box too (out of band), so the secret of a revoked key is not left there.
        context = {**_api_keys_context(request), "revoked_key": api_key}
        return render(request, "accounts/partials/api_keys_table.html", context)
    return redirect("api_keys")
