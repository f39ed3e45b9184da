"""`params` against a model's JSON Schema, with messages written for people.

jsonschema's own wording echoes the whole value and speaks schema ("-5 is less than the minimum
of 0", "'aaaa…(20,000 characters)' is too long"). `params_errors` turns each problem into a
sentence that names the field by its label and never quotes what was sent ("Seed must be 0 or
more.", "Prompt is too long (at most 4,000 characters)."); anything taken from the schema is
truncated too. Used by `generations.services.submission` for the API and the generate page.
"""

from __future__ import annotations

import json

import jsonschema

from generations.selectors import ALWAYS_ACCEPTED

SEED_MIN = ALWAYS_ACCEPTED["seed"]["minimum"]
SEED_MAX = ALWAYS_ACCEPTED["seed"]["maximum"]
QUOTE_MAX = 40  # characters of a name or schema value quoted in a message
PREFIX = "params"

_TYPES = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "object": "a JSON object",
    "array": "a list",
    "null": "empty",
}


def truncated(value, limit: int = QUOTE_MAX) -> str:
    """`value` as text of at most `limit` characters (an ellipsis marks the cut)."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())  # no line breaks in a one-line message
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    return truncated(value)


def _label(schema: dict, path: list) -> str:
    """The field's name for a person: the property's `title`, else its name, capitalised."""
    if not path:
        return "Parameters"
    spec = (schema.get("properties") or {}).get(path[0]) if isinstance(path[0], str) else None
    if len(path) == 1 and isinstance(spec, dict) and isinstance(spec.get("title"), str):
        title = spec["title"].strip()
        if title:
            return truncated(title)
    name = truncated(str(path[0]).replace("_", " ").replace("-", " ").strip() or str(path[0]))
    name = name[:1].upper() + name[1:]
    rest = ".".join(truncated(str(p), 20) for p in path[1:])
    return f"{name} ({rest})" if rest else name


def _types(kind) -> str:
    kinds = kind if isinstance(kind, list) else [kind]
    words = [_TYPES.get(k, truncated(k)) for k in kinds if isinstance(k, str)]
    return " or ".join(words) or "of another type"


def _message(problem: jsonschema.ValidationError, label: str) -> str:
    rule, value = problem.validator, problem.validator_value
    if rule == "minimum":
        return f"{label} must be {_number(value)} or more."
    if rule == "maximum":
        return f"{label} must be {_number(value)} or less."
    if rule == "exclusiveMinimum":
        return f"{label} must be more than {_number(value)}."
    if rule == "exclusiveMaximum":
        return f"{label} must be less than {_number(value)}."
    if rule == "maxLength":
        return f"{label} is too long (at most {_number(value)} characters)."
    if rule == "minLength":
        if value == 1:
            return f"{label} must not be empty."
        return f"{label} is too short (at least {_number(value)} characters)."
    if rule == "type":
        return f"{label} must be {_types(value)}."
    if rule == "enum":
        options = [truncated(v, 20) for v in (value or [])[:8]]
        more = ", …" if len(value or []) > 8 else ""
        return f"{label} must be one of: {', '.join(options)}{more}."
    if rule == "const":
        return f"{label} must be {truncated(value, 20)}."
    if rule == "multipleOf":
        return f"{label} must be a multiple of {_number(value)}."
    if rule == "pattern":
        return f"{label} does not have the expected format."
    if rule == "format":
        return f"{label} must be a valid {truncated(value, 20)}."
    if rule == "maxItems":
        return f"{label} has too many items (at most {_number(value)})."
    if rule == "minItems":
        return f"{label} needs at least {_number(value)} item{'s' if value != 1 else ''}."
    if rule == "uniqueItems":
        return f"{label} must not repeat an item."
    if rule in ("maxProperties", "minProperties"):
        return f"{label} has the wrong number of entries."
    return f"{label} is not valid."


def params_errors(*, schema: dict, params: dict) -> dict[str, list[str]]:
    """{"params.<field>": [message, …]} for every problem of `params` (empty when valid)."""
    validator = jsonschema.Draft202012Validator(schema)
    errors: dict[str, list[str]] = {}
    for problem in sorted(validator.iter_errors(params), key=lambda e: list(map(str, e.path))):
        path = list(problem.absolute_path)
        instance = problem.instance
        if problem.validator == "required" and isinstance(instance, dict):
            for name in problem.validator_value or []:
                if name not in instance:
                    field = [*path, name]
                    key = ".".join([PREFIX, *(str(p) for p in field)])
                    errors.setdefault(key, []).append(f"{_label(schema, field)} is required.")
            continue
        if problem.validator == "additionalProperties" and isinstance(instance, dict):
            allowed = set((problem.schema.get("properties") or {}).keys())
            for name in instance:
                if name not in allowed:
                    key = ".".join([PREFIX, *(str(p) for p in path), truncated(str(name), 30)])
                    where = f" in {_label(schema, path)}" if path else ""
                    errors.setdefault(key, []).append(
                        f"Unknown parameter “{truncated(name, 30)}”{where}."
                    )
            continue
        key = ".".join([PREFIX, *(str(p) for p in path)])
        errors.setdefault(key, []).append(_message(problem, _label(schema, path)))
    return errors
