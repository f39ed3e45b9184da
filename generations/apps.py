from django.apps import AppConfig


class GenerationsConfig(AppConfig):
    name = "generations"
    verbose_name = "Generations"

    def ready(self) -> None:
        from celery.signals import celeryd_after_setup

        from generations import receivers, stages
        from generations.celery_hooks import consume_every_pool_queue
        from infra_costs.registry import set_external_costs_provider, set_stage_costs_provider
        from infra_costs.signals import runs_imported

        runs_imported.connect(receivers.on_runs_imported, dispatch_uid="generations.imported")
        set_external_costs_provider(receivers.external_costs)
        set_stage_costs_provider(stages.stage_costs)
        celeryd_after_setup.connect(
            consume_every_pool_queue, dispatch_uid="generations.consume_every_pool_queue"
        )
