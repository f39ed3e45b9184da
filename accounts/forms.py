"""Web forms. They validate input only; every write goes through `accounts.services`."""

from __future__ import annotations

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm, _unicode_ci_compare

from accounts.login_throttle import login_throttle_message
from accounts.models import Role, User


class SignupForm(forms.Form):
    """Step 1 of signing up (accounts.signup): who and which organization; the password comes
    with the emailed link (SignupPasswordForm)."""

    email = forms.EmailField(
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True})
    )
    name = forms.CharField(
        label="Your name",
        max_length=150,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "name"}),
        help_text="Optional.",
    )
    organization_name = forms.CharField(
        label="Organization name",
        max_length=150,
        widget=forms.TextInput(attrs={"autocomplete": "organization"}),
        help_text="Your company or team. You can invite others later.",
    )
    ref = forms.CharField(required=False, max_length=16, widget=forms.HiddenInput)

    def clean_email(self) -> str:
        return User.objects.normalize_email(self.cleaned_data["email"]).strip().lower()

    def clean_organization_name(self) -> str:
        name = self.cleaned_data["organization_name"].strip()
        if not name:
            raise forms.ValidationError("Give your organization a name.")
        return name


class SignupPasswordForm(forms.Form):
    """Step 2 of signing up, from the emailed link: the password, checked by Django's
    validators against the email and name being signed up."""

    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password", "autofocus": True}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Password (again)",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args, email: str = "", name: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.email, self.name = email, name

    def clean(self):
        cleaned = super().clean()
        password1, password2 = cleaned.get("password1"), cleaned.get("password2")
        if password1 and password2 and password1 != password2:
            self.add_error("password2", "The two passwords do not match.")
        elif password1:
            probe = User(email=self.email, name=self.name)
            try:
                password_validation.validate_password(password1, probe)
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return cleaned


class ThrottleMessageMixin:
    """A login the throttle refused (accounts.backends) says so, and when to try again."""

    def get_invalid_login_error(self):
        wait = getattr(self.request, "login_retry_after", 0)
        if wait:
            return forms.ValidationError(login_throttle_message(wait), code="throttled")
        return super().get_invalid_login_error()


class ThrottledAdminAuthenticationForm(ThrottleMessageMixin, AdminAuthenticationForm):
    """The admin's login form (`admin.site.login_form`, set in accounts/admin.py)."""


class EmailAuthenticationForm(ThrottleMessageMixin, AuthenticationForm):
    """Django's login form, labelled and typed for an email address (emails are stored in
    lower case, so the address is matched case-insensitively)."""

    username = forms.EmailField(
        label="Email",
        widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"}),
    )

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "Enter a correct email and password.",
    }

    def clean_username(self) -> str:
        return self.cleaned_data["username"].strip().lower()


class InviteAwarePasswordResetForm(PasswordResetForm):
    """Django's reset form skips users without a usable password; here those are people added
    to an organization who have not chosen one yet, so they may ask for a fresh link."""

    def get_users(self, email):
        candidates = User.objects.filter(email__iexact=email.strip(), is_active=True)
        return (u for u in candidates if _unicode_ci_compare(email.strip(), u.email))


class OrganizationForm(forms.Form):
    name = forms.CharField(
        label="Organization name",
        max_length=150,
        widget=forms.TextInput(attrs={"autocomplete": "organization", "autofocus": True}),
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the organization a name.")
        return name


class OrganizationSwitchForm(forms.Form):
    organization = forms.IntegerField()


class MemberAddForm(forms.Form):
    email = forms.EmailField(widget=forms.EmailInput(attrs={"placeholder": "name@example.com"}))
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args, can_add_owner: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not can_add_owner:
            self.fields["role"].choices = [c for c in Role.choices if c[0] != Role.OWNER]

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()


class RoleChangeForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class APIKeyCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": "e.g. production, ci", "autocomplete": "off"}),
        help_text="A label so you can tell your keys apart.",
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the key a name.")
        return name
