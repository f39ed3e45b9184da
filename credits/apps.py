from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "credits"
    verbose_name = "Credits ledger"

    def ready(self) -> None:
        from accounts.signals import organization_signed_up, subscription_period_opened
        from credits import receivers

        subscription_period_opened.connect(
            receivers.on_subscription_period_opened, dispatch_uid="credits.period_opened"
        )
        organization_signed_up.connect(
            receivers.on_organization_signed_up, dispatch_uid="credits.signed_up"
        )
