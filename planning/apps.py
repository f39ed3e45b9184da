from django.apps import AppConfig


class PlanningConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "planning"
    verbose_name = "Planning"

    def ready(self) -> None:
        from planning import exports  # noqa: F401 - registers the margins exports
