from django.apps import AppConfig


class GenerationsConfig(AppConfig):
    name = "generations"
    verbose_name = "Generations"

    def ready(self) -> None:
        from celery.signals import celeryd_after_setup

        from generations import receivers, stages
        from generations.celery_hooks import consume_every_pool_queue
        from generations.selectors import units_by_model
        from infra_costs.registry import (
            set_external_costs_provider,
            set_stage_costs_provider,
            set_units_provider,
        )
        from infra_costs.signals import runs_imported

        runs_imported.connect(receivers.on_runs_imported, dispatch_uid="generations.imported")
        set_external_costs_provider(receivers.external_costs)
        set_stage_costs_provider(stages.stage_costs)
        set_units_provider(
            lambda slugs, start_at, end_at: units_by_model(
                slugs=slugs, start_at=start_at, end_at=end_at
            )
        )
        celeryd_after_setup.connect(
            consume_every_pool_queue, dispatch_uid="generations.consume_every_pool_queue"
        )
