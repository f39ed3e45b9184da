"""Serializer bases every app's API uses for what it accepts: nothing is silently ignored.

- `StrictSerializer` (request bodies): a key the serializer doesn't declare is a 400
  `validation_error` naming it ("Unknown field."), not dropped.
- `QuerySerializer` (query parameters): a parameter given empty (`?status=`) is refused
  instead of read as absent; parameters of other concerns (the cursor, `page_size`) pass.
- `BuiltOnce` (responses on hot paths): the fields are built once per class instead of for
  every serializer, and written by one serializer bound once per class.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from rest_framework import serializers
from rest_framework.fields import SkipField
from rest_framework.relations import PKOnlyObject


def _writable(serializer: serializers.Serializer) -> list[str]:
    return [name for name, field in serializer.fields.items() if not field.read_only]


class StrictSerializer(serializers.Serializer):
    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            allowed = _writable(self)
            unknown = sorted(str(key) for key in data if key not in allowed)
            if unknown:
                expected = ", ".join(f"`{name}`" for name in allowed) or "no fields"
                raise serializers.ValidationError(
                    {key: [f"Unknown field (expected {expected})."] for key in unknown}
                )
        return super().to_internal_value(data)


class QuerySerializer(serializers.Serializer):
    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            empty = {
                name: ["Must not be empty: give a value or leave the parameter out."]
                for name, field in self.fields.items()
                if not field.read_only
                and name in data
                and str(data.get(name)).strip() == ""
                and not getattr(field, "allow_blank", False)
            }
            if empty:
                raise serializers.ValidationError(empty)
        return super().to_internal_value(data)


# Fields whose output depends on the serializer, not the value alone: not for `BuiltOnce`.
_NEEDS_CONTEXT = (
    serializers.SerializerMethodField,
    serializers.HyperlinkedRelatedField,
    serializers.HyperlinkedIdentityField,
)


class BuiltOnce:
    """A read serializer whose fields are built once per class (issue 16): DRF builds a
    serializer's fields for every instance (a ModelSerializer introspects its model each time)
    and copies every declared field; on a response written per request, or per job of a list,
    that was most of the serializer's cost.

    - `get_fields`: built once per class, then copied for each serializer (a field is bound to
      one parent), as DRF copies declared fields;
    - `to_representation`: DRF's `Serializer.to_representation`, the same code, over the
      readable fields of one serializer built and bound once per class.

    Only for fields whose output depends on the value alone — never on the serializer's
    `context` or `instance` (no `SerializerMethodField`, no hyperlinked field): the bound-once
    fields see an empty context. Same JSON as DRF's generic path (tests/config/test_serializers.py,
    tests/generations/test_api_serializers.py). Put it first among the bases."""

    _built_fields = None
    _bound_fields = None

    def get_fields(self):
        cls = type(self)
        if cls.__dict__.get("_built_fields") is None:
            cls._built_fields = super().get_fields()
        return copy.deepcopy(cls._built_fields)

    def to_representation(self, instance):
        cls = type(self)
        fields = cls.__dict__.get("_bound_fields")
        if fields is None:
            fields = tuple(cls()._readable_fields)
            bad = [f.field_name for f in fields if isinstance(f, _NEEDS_CONTEXT)]
            if bad:
                raise TypeError(f"{cls.__name__}: {', '.join(bad)} need the serializer's context")
            cls._bound_fields = fields
        ret = {}
        for field in fields:
            try:
                attribute = field.get_attribute(instance)
            except SkipField:
                continue
            check_for_none = attribute.pk if isinstance(attribute, PKOnlyObject) else attribute
            if check_for_none is None:
                ret[field.field_name] = None
            else:
                ret[field.field_name] = field.to_representation(attribute)
        return ret
