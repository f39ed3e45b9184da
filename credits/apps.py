from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "credits"
    verbose_name = "Credits ledger"

    def ready(self) -> None:
        from accounts.signals import subscription_period_opened
        from credits import receivers

        subscription_period_opened.connect(
            receivers.on_subscription_period_opened, dispatch_uid="credits.period_opened"
        )
