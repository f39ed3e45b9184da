"""Planning models: saved growth scenarios (inputs only — outputs are computed when shown, from
the costs measured over the period the inputs name)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Scenario(models.Model):
    """A named set of scenario planner inputs (`planning.scenarios.inputs`), validated before it
    is saved. Never edited in place: a changed scenario is saved under a new row."""

    name = models.CharField(max_length=100)
    inputs = models.JSONField(help_text="Validated scenario inputs (planning.scenarios.inputs).")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name
