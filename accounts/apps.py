from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts & plans"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from accounts import keycache
        from accounts.models import APIKey, Organization, Plan, Subscription

        # What a cached API key carries: any saved or deleted row invalidates the cache.
        for model in (APIKey, Organization, Plan, Subscription):
            for signal in (post_save, post_delete):
                signal.connect(keycache.forget_on_save, sender=model, weak=False)
