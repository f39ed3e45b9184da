"""Django admin for accounts: staff support and plan configuration.

Changes that carry business rules go through `accounts.services` (revoking keys, changing an
organization's plan); API keys are never created here and their digest is never shown; the
audit log is read-only.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.contrib.auth.forms import UserChangeForm as DjangoUserChangeForm
from django.db.models import Count
from django.utils.translation import gettext_lazy as _

from accounts import keys, services
from accounts.forms import ThrottledAdminAuthenticationForm
from accounts.models import (
    APIKey,
    AuditEvent,
    Membership,
    Organization,
    Plan,
    Role,
    Subscription,
    Team,
    TeamMembership,
    User,
)
from config.errors import ServiceError

# The admin's login is throttled like /login/ (accounts.login_throttle) and says so.
admin.site.login_form = ThrottledAdminAuthenticationForm

# --- Users ------------------------------------------------------------------------------------


def _clean_unique_email(form: forms.ModelForm) -> str:
    email = User.objects.normalize_email(form.cleaned_data.get("email") or "").lower()
    taken = User.objects.filter(email__iexact=email)
    if form.instance.pk is not None:
        taken = taken.exclude(pk=form.instance.pk)
    if email and taken.exists():
        raise forms.ValidationError(_("A user with this email address already exists."))
    return email


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        return _clean_unique_email(self)


class UserChangeForm(DjangoUserChangeForm):
    class Meta:
        model = User
        fields = "__all__"

    def clean_email(self) -> str:
        return _clean_unique_email(self)


class MembershipOfUserInline(admin.TabularInline):
    model = Membership
    fk_name = "user"
    extra = 0
    autocomplete_fields = ("organization",)
    fields = ("organization", "role", "created_at")
    readonly_fields = ("created_at",)
    verbose_name = "organization membership"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Django's UserAdmin for an email-based user (there is no username)."""

    form = UserChangeForm
    add_form = UserCreationForm
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (_("Personal info"), {"fields": ("name",)}),
        (
            _("Permissions"),
            {
                "fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions"),
            },
        ),
        (_("Important dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "usable_password", "password1", "password2"),
            },
        ),
    )
    readonly_fields = ("last_login", "date_joined")
    list_display = (
        "email",
        "name",
        "is_staff",
        "is_superuser",
        "is_active",
        "date_joined",
        "last_login",
    )
    list_filter = ("is_staff", "is_superuser", "is_active", "groups")
    search_fields = ("email", "name", "memberships__organization__slug")
    ordering = ("email",)
    date_hierarchy = "date_joined"
    inlines = (MembershipOfUserInline,)

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()


# --- Plans ------------------------------------------------------------------------------------


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = (
        "slug",
        "name",
        "monthly_price_usd",
        "monthly_credits",
        "overage_enabled",
        "overage_cap",
        "overage_price_usd",
        "daily_generation_cap",
        "max_concurrent_jobs",
        "api_rate_limit_per_min",
        "queue_priority",
        "api_access",
        "is_public",
        "subscriber_count",
    )
    list_filter = (
        "api_access",
        "overage_enabled",
        "queue_priority",
        "is_public",
        "unlimited",
        "watermark",
    )
    search_fields = ("slug", "name", "stripe_price_id")
    ordering = ("sort_order", "slug")
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("slug", "name", "is_public", "sort_order")}),
        ("Price and credits", {"fields": ("monthly_price_usd", "monthly_credits")}),
        ("Overage", {"fields": ("overage_enabled", "overage_cap", "overage_price_usd")}),
        (
            "Limits",
            {
                "fields": (
                    "daily_generation_cap",
                    "max_concurrent_jobs",
                    "api_access",
                    "api_rate_limit_per_min",
                    "queue_priority",
                )
            },
        ),
        (
            "Entitlements (docs/pricing.md; empty: no limit)",
            {
                "fields": (
                    "models_allowed",
                    "max_megapixels",
                    "max_duration_s",
                    "max_batch_size",
                )
            },
        ),
        (
            "Plan shape (docs/planning.md)",
            {
                "fields": (
                    "unlimited",
                    "fair_use_cap",
                    "fair_use_throttle",
                    "fair_use_hourly_rate",
                    "watermark",
                )
            },
        ),
        ("Stripe", {"fields": ("stripe_price_id",)}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_subscribers=Count("subscriptions"))

    @admin.display(description="subscribers", ordering="_subscribers")
    def subscriber_count(self, obj: Plan) -> int:
        return obj._subscribers


# --- Organizations ----------------------------------------------------------------------------


class MembershipInline(admin.TabularInline):
    model = Membership
    fk_name = "organization"
    extra = 0
    autocomplete_fields = ("user",)
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)


class SubscriptionInline(admin.StackedInline):
    """Shown for reference; change it on the subscription's own page."""

    model = Subscription
    extra = 0
    max_num = 1
    can_delete = False
    fields = (
        "plan",
        "status",
        "current_period_start",
        "current_period_end",
        "cancel_at_period_end",
        "stripe_customer_id",
        "stripe_subscription_id",
    )
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class APIKeyInline(admin.TabularInline):
    model = APIKey
    extra = 0
    can_delete = False
    fields = ("name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    show_change_link = True
    ordering = ("-created_at",)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "plan", "subscription_status", "member_count", "created_at")
    list_filter = ("subscription__plan", "subscription__status")
    search_fields = ("slug", "name", "memberships__user__email")
    readonly_fields = ("created_at",)
    date_hierarchy = "created_at"
    inlines = (SubscriptionInline, MembershipInline, APIKeyInline)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("subscription__plan")
            .annotate(_members=Count("memberships", distinct=True))
        )

    def has_add_permission(self, request) -> bool:
        # Organizations come with an owner and a subscription: sign-up or `manage.py create_org`.
        return False

    @admin.display(description="plan", ordering="subscription__plan__sort_order")
    def plan(self, obj: Organization) -> str:
        sub = getattr(obj, "subscription", None)
        return sub.plan.name if sub else "—"

    @admin.display(description="status", ordering="subscription__status")
    def subscription_status(self, obj: Organization) -> str:
        sub = getattr(obj, "subscription", None)
        return sub.get_status_display() if sub else "—"

    @admin.display(description="members", ordering="_members")
    def member_count(self, obj: Organization) -> int:
        return obj._members


class MembershipAdminForm(forms.ModelForm):
    class Meta:
        model = Membership
        fields = ("organization", "user", "role")

    def clean(self):
        cleaned = super().clean()
        instance = self.instance
        if (
            instance.pk is not None
            and instance.role == Role.OWNER
            and cleaned.get("role") != Role.OWNER
            and Membership.objects.filter(
                organization_id=instance.organization_id, role=Role.OWNER
            ).count()
            <= 1
        ):
            raise forms.ValidationError("An organization must keep at least one owner.")
        return cleaned


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    form = MembershipAdminForm
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__email", "user__name", "organization__slug", "organization__name")
    autocomplete_fields = ("organization", "user")
    list_select_related = ("user", "organization")
    readonly_fields = ("created_at",)


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    """Changing the plan here starts a fresh period on the new plan through
    `accounts.services.subscription_start` (audit row, credit grant for the new period)."""

    list_display = (
        "organization",
        "plan",
        "status",
        "current_period_start",
        "current_period_end",
        "cancel_at_period_end",
        "stripe_subscription_id",
    )
    list_filter = ("plan", "status", "cancel_at_period_end")
    search_fields = (
        "organization__slug",
        "organization__name",
        "stripe_customer_id",
        "stripe_subscription_id",
    )
    list_select_related = ("organization", "plan")
    autocomplete_fields = ("organization",)
    readonly_fields = ("created_at", "updated_at")
    date_hierarchy = "current_period_end"

    def has_add_permission(self, request) -> bool:
        return False  # every organization gets one when it is created

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return (*fields, "organization") if obj is not None else fields

    def save_model(self, request, obj, form, change):
        if change and "plan" in form.changed_data:
            services.subscription_start(
                organization=obj.organization, plan=obj.plan, actor=request.user
            )
            self.message_user(
                request,
                f"{obj.organization} moved to {obj.plan}: a new billing period starts now.",
                messages.INFO,
            )
            return
        super().save_model(request, obj, form, change)


# --- API keys ---------------------------------------------------------------------------------


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return (("active", "Active"), ("revoked", "Revoked"))

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    """Keys are created by customers (web UI) or `create_org`; staff can only revoke them."""

    list_display = (
        "name",
        "masked_key",
        "organization",
        "is_active",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    list_filter = (KeyStatusFilter, "created_at", "last_used_at")
    search_fields = ("prefix", "name", "organization__slug", "organization__name")
    list_select_related = ("organization", "created_by")
    fields = (
        "organization",
        "name",
        "masked_key",
        "created_by",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    readonly_fields = fields
    actions = ("revoke_selected",)
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # revoke instead: audit events point at keys

    @admin.display(description="key")
    def masked_key(self, obj: APIKey) -> str:
        return f"{keys.API_KEY_PREFIX}{obj.prefix}_…"

    @admin.display(description="active", boolean=True)
    def is_active(self, obj: APIKey) -> bool:
        return obj.is_active

    @admin.action(description="Revoke selected keys", permissions=["change"])
    def revoke_selected(self, request, queryset):
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True).select_related("organization"):
            try:
                services.api_key_revoke(api_key=key, actor=request.user, as_staff=True)
            except ServiceError as exc:
                self.message_user(request, f"{key}: {exc.detail}", messages.ERROR)
                continue
            revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)


# --- Audit ------------------------------------------------------------------------------------


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The audit log: read-only."""

    list_display = (
        "created_at",
        "action",
        "organization",
        "actor",
        "actor_api_key",
        "target_type",
        "target_id",
    )
    list_filter = ("action", "target_type", "created_at")
    search_fields = (
        "action",
        "organization__slug",
        "actor__email",
        "actor_api_key__prefix",
        "target_id",
    )
    list_select_related = ("organization", "actor", "actor_api_key")
    date_hierarchy = "created_at"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


from accounts.webhooks import admin as _webhooks_admin  # noqa: E402, F401 - registers it


class TeamMembershipInline(admin.TabularInline):
    model = TeamMembership
    extra = 0
    autocomplete_fields = ("user",)
    readonly_fields = ("created_at",)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    """Teams (budgets apply per team: credits.budgets). Owners and admins manage them on the
    budgets page and the API, audited; staff can correct them here."""

    list_display = ("slug", "name", "organization", "created_at")
    search_fields = ("slug", "name", "organization__slug")
    autocomplete_fields = ("organization",)
    list_select_related = ("organization",)
    readonly_fields = ("created_at",)
    inlines = [TeamMembershipInline]
