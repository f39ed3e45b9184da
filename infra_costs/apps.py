from django.apps import AppConfig


class InfraCostsConfig(AppConfig):
    name = "infra_costs"
    verbose_name = "Infrastructure costs"
