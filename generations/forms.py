"""Web forms of generations. They parse input only: `params` is validated against the model's
JSON Schema by `generations.services.submission.params_validate` (through `generation_submit`),
which is the single source of truth for what a model accepts; these forms only turn HTML
inputs into JSON values.

`ParamsForm` is built from a model's (effective) JSON Schema: string, integer, number and
boolean properties and enums become inputs; anything else (objects, arrays, unions) a JSON
textarea.
"""

from __future__ import annotations

import json
import uuid

from django import forms

from config.strict_json import HostileJSON, loads_strict
from config.web.forms import DateField
from generations.models import JobStatus

PARAMS_PREFIX = "params"
TEXTAREA_NAMES = {"prompt", "negative_prompt"}
LONG_STRING = 300  # strings allowed to be longer than this get a textarea


def _json_type(spec: dict) -> str | None:
    """The property's JSON type; for a list like ["string", "null"], the first non-null one."""
    kind = spec.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        return kinds[0] if len(kinds) == 1 else None
    return kind


def _label(name: str, spec: dict) -> str:
    title = spec.get("title")
    if isinstance(title, str) and title.strip():
        return title.strip()
    return name.replace("_", " ").replace("-", " ").strip().capitalize() or name


def _enum_key(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


class JSONValueField(forms.CharField):
    """Any JSON value, typed as text. Empty → None."""

    widget = forms.Textarea

    def to_python(self, value):
        text = super().to_python(value)
        if text in (None, ""):
            return None
        try:  # not JSON, too deep, a NUL or a lone surrogate: a message, not a 500
            return loads_strict(text)
        except HostileJSON as exc:
            raise forms.ValidationError(str(exc)) from exc


def _number_attrs(spec: dict, *, integer: bool) -> dict:
    attrs = {}
    for key, attr in (("minimum", "min"), ("maximum", "max")):
        if isinstance(spec.get(key), int | float) and not isinstance(spec.get(key), bool):
            attrs[attr] = spec[key]
    step = spec.get("multipleOf")
    attrs["step"] = step if isinstance(step, int | float) else (1 if integer else "any")
    if integer:
        attrs["inputmode"] = "numeric"
    return attrs


def field_for(name: str, spec, *, required: bool) -> tuple[forms.Field, str]:
    """(form field, kind) for one schema property. `kind` tells `ParamsForm.params` how to
    turn the cleaned value back into JSON: "enum", "json", "bool" or "plain"."""
    if not isinstance(spec, dict):
        spec = {}
    label = _label(name, spec)
    help_text = spec.get("description") if isinstance(spec.get("description"), str) else ""
    default = spec.get("default")
    common = {"label": label, "help_text": help_text, "required": required}

    if isinstance(spec.get("enum"), list) and spec["enum"]:
        choices = [(_enum_key(v), v if isinstance(v, str) else _enum_key(v)) for v in spec["enum"]]
        if not required:
            choices.insert(0, ("", "—"))
        field = forms.ChoiceField(
            choices=choices,
            error_messages={"invalid_choice": "Pick one of the choices."},  # never echo it
            **common,
        )
        if "default" in spec:
            field.initial = _enum_key(default)
        return field, "enum"

    kind = _json_type(spec)
    if kind == "string":
        max_length = spec.get("maxLength")
        attrs = {}
        if isinstance(max_length, int):
            attrs["maxlength"] = max_length
        if isinstance(spec.get("minLength"), int) and spec["minLength"] > 0:
            attrs["minlength"] = spec["minLength"]
        long = name in TEXTAREA_NAMES or (isinstance(max_length, int) and max_length > LONG_STRING)
        if long:
            attrs["rows"] = 4 if name == "prompt" else 2
            widget = forms.Textarea(attrs=attrs)
        else:
            widget = forms.TextInput(attrs=attrs)
        if name == "prompt":
            widget.attrs.setdefault("placeholder", "Describe what you want to generate")
        field = forms.CharField(widget=widget, **common)
        if isinstance(default, str):
            field.initial = default
        return field, "plain"

    if kind == "integer":
        attrs = _number_attrs(spec, integer=True)
        if name == "seed":
            attrs["placeholder"] = "Random"
            if not help_text:
                common["help_text"] = "Leave empty for a random seed; reuse one to repeat a result."
        field = forms.IntegerField(widget=forms.NumberInput(attrs=attrs), **common)
        if isinstance(default, int) and not isinstance(default, bool):
            field.initial = default
        return field, "plain"

    if kind == "number":
        field = forms.FloatField(
            widget=forms.NumberInput(attrs=_number_attrs(spec, integer=False)), **common
        )
        if isinstance(default, int | float) and not isinstance(default, bool):
            field.initial = default
        return field, "plain"

    if kind == "boolean":
        # A checkbox is always true or false: "required" can't mean "must be ticked" here.
        common["required"] = False
        field = forms.BooleanField(**common)
        if isinstance(default, bool):
            field.initial = default
        return field, "bool"

    # Objects, arrays, unions, no type at all: JSON typed by hand.
    field = JSONValueField(
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "json-input"}),
        **common,
    )
    if not help_text:
        field.help_text = "JSON" + (f" ({kind})" if isinstance(kind, str) else "") + "."
    if "default" in spec:
        field.initial = json.dumps(default, ensure_ascii=False)
    return field, "json"


def _ordered(properties: dict) -> list[str]:
    """prompt first, seed last, the rest in the schema's order."""
    names = list(properties)
    head = [n for n in names if n == "prompt"]
    tail = [n for n in names if n == "seed"]
    return head + [n for n in names if n not in ("prompt", "seed")] + tail


class ParamsForm(forms.Form):
    """The params inputs of one model, named `params-<property>`."""

    def __init__(self, *args, schema: dict, **kwargs):
        kwargs.setdefault("prefix", PARAMS_PREFIX)
        super().__init__(*args, **kwargs)
        properties = schema.get("properties") if isinstance(schema, dict) else None
        properties = properties if isinstance(properties, dict) else {}
        required = set(schema.get("required") or []) if isinstance(schema, dict) else set()
        self.kinds: dict[str, str] = {}
        for name in _ordered(properties):
            field, kind = field_for(name, properties[name], required=name in required)
            self.fields[name] = field
            self.kinds[name] = kind

    @classmethod
    def initial_from(cls, params: dict | None, schema: dict) -> dict:
        """Initial values that show `params` (an earlier job's) in the inputs."""
        form = cls(schema=schema)
        initial = {}
        for name, value in (params or {}).items():
            kind = form.kinds.get(name)
            if kind == "enum":
                initial[name] = _enum_key(value)
            elif kind == "json":
                initial[name] = json.dumps(value, ensure_ascii=False)
            elif kind is not None:
                initial[name] = value
        return initial

    def params(self) -> dict:
        """The cleaned values as JSON `params`: empty optional inputs are left out."""
        out = {}
        for name, kind in self.kinds.items():
            value = self.cleaned_data.get(name)
            if kind == "bool":
                out[name] = bool(value)
                continue
            if value is None or value == "":
                continue
            if kind == "enum":
                value = json.loads(value)
            elif kind == "plain" and isinstance(value, float) and value.is_integer():
                value = int(value) if abs(value) < 2**53 else value
            out[name] = value
        return out

    def add_service_errors(self, errors: dict[str, list[str]]) -> list[str]:
        """Put a service ValidationError's `params.<name>…` messages next to their inputs.
        Returns the messages no input could take (e.g. about `params` as a whole)."""
        leftover = []
        for key, messages in (errors or {}).items():
            name = key.removeprefix(f"{PARAMS_PREFIX}.").split(".", 1)[0]
            if key.startswith(f"{PARAMS_PREFIX}.") and name in self.fields:
                for message in messages:
                    self.add_error(name, message)
            else:
                leftover.extend(messages)
        return leftover


class SubmitForm(forms.Form):
    """The non-params part of the generate form: the model, a per-form token that makes a
    double submit (or a replayed POST) create one job (it becomes the Idempotency-Key) and the
    job the page shows (kept on the page when the submission is refused)."""

    model = forms.SlugField(widget=forms.HiddenInput, max_length=100)
    form_token = forms.UUIDField(widget=forms.HiddenInput, required=False)
    job = forms.UUIDField(widget=forms.HiddenInput, required=False)

    @staticmethod
    def new_token() -> str:
        return str(uuid.uuid4())


class JobFilterForm(forms.Form):
    status = forms.ChoiceField(
        choices=[("", "All statuses"), *JobStatus.choices],
        required=False,
        label="Status",
        widget=forms.Select(attrs={"data-autosubmit": ""}),
    )
    model = forms.ChoiceField(
        choices=[("", "All models")],
        required=False,
        label="Model",
        widget=forms.Select(attrs={"data-autosubmit": ""}),
    )
    date_from = DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, models=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [("", "All models"), *[(m.slug, m.name) for m in models]]

    def clean(self):
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "“To” is before “From”.")
        return data
