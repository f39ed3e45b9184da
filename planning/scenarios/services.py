"""Writes of the scenario planner: saving a scenario (validated inputs, audited)."""

from __future__ import annotations

import re
from typing import Any

from django.db import transaction

from accounts.models import User
from accounts.services import audit_record
from config.errors import ValidationError
from planning.models import Scenario
from planning.scenarios.selectors import inputs_parse

NAME_MAX = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def _clean_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("Give the scenario a name.", errors={"name": ["Required."]})
    name = name.strip()
    if len(name) > NAME_MAX:
        raise ValidationError(
            f"The name is too long (at most {NAME_MAX} characters).",
            errors={"name": [f"At most {NAME_MAX} characters."]},
        )
    if _CONTROL.search(name):
        raise ValidationError(
            "The name has control characters.", errors={"name": ["No control characters."]}
        )
    return name


def scenario_create(*, name: str, inputs: Any, actor: User | None) -> Scenario:
    """Save a named scenario. The inputs are validated first (ValidationError, nothing
    written) and stored in their canonical JSON form; an audit event records who saved it."""
    errors: dict[str, list[str]] = {}
    detail = ""
    try:
        clean_name = _clean_name(name)
    except ValidationError as exc:
        errors.update(exc.errors)
        detail = exc.detail
    try:
        parsed = inputs_parse(inputs)
    except ValidationError as exc:
        errors.update(exc.errors)
        detail = detail or exc.detail
    if errors:
        raise ValidationError(detail, errors=errors)
    with transaction.atomic(durable=True):
        scenario = Scenario.objects.create(
            name=clean_name, inputs=parsed.as_json(), created_by=actor
        )
        audit_record(
            action="planning.scenario_created",
            actor=actor,
            target=scenario,
            data={"name": clean_name},
        )
    return scenario
