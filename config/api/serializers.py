"""Serializer bases every app's API uses for what it accepts: nothing is silently ignored.

- `StrictSerializer` (request bodies): a key the serializer doesn't declare is a 400
  `validation_error` naming it ("Unknown field."), not dropped.
- `QuerySerializer` (query parameters): a parameter given empty (`?status=`) is refused
  instead of read as absent; parameters of other concerns (the cursor, `page_size`) pass.
"""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers


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
