"""`BuiltOnce` (config/api/serializers.py): a read serializer whose fields are built and bound
once per class writes exactly what DRF's generic path writes, call after call, and refuses
fields whose output needs the serializer's context."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest
from rest_framework import serializers

from config.api.serializers import BuiltOnce


class Child(BuiltOnce, serializers.Serializer):
    name = serializers.CharField()
    amount = serializers.DecimalField(max_digits=12, decimal_places=3)


class Parent(BuiltOnce, serializers.Serializer):
    total = serializers.DecimalField(max_digits=12, decimal_places=3)
    at = serializers.DateTimeField(allow_null=True)
    items = Child(many=True)
    first = Child(allow_null=True)
    renamed = serializers.IntegerField(source="inner.value")


def generic(serializer_class, obj):
    """DRF's own `Serializer.to_representation`, with its per-instance fields all the way
    down (the nested serializers' fields too)."""
    out = serializers.Serializer.to_representation(serializer_class(obj), obj)
    return out


def thing(n: int, *, with_first: bool):
    items = [SimpleNamespace(name=f"i{n}-{k}", amount=Decimal(n) / 8 + k) for k in range(n % 3)]
    return SimpleNamespace(
        total=Decimal(n) / 3,
        at=datetime(2026, 12, 2, n % 24, tzinfo=UTC) if n % 2 else None,
        items=items,
        first=items[0] if with_first and items else None,
        inner=SimpleNamespace(value=n * 7),
    )


def plain(data):
    """OrderedDicts and ReturnLists as plain dicts and lists."""
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [plain(v) for v in data]
    return data


def test_the_output_is_drfs_for_every_object_call_after_call():
    objs = [thing(n, with_first=bool(n % 2)) for n in range(1, 12)]
    for obj in objs + objs:  # twice: nothing of one call stays in the bound fields
        assert plain(Parent(obj).data) == plain(generic(Parent, obj))
    assert plain(Parent(objs[4]).data)["renamed"] == 35
    assert plain(Parent(objs[1]).data)["first"] is None  # a null nested serializer


def test_a_field_that_needs_the_context_is_refused():
    class WithMethod(BuiltOnce, serializers.Serializer):
        name = serializers.CharField()
        shout = serializers.SerializerMethodField()

        def get_shout(self, obj):
            return obj.name.upper()

    with pytest.raises(TypeError, match="shout"):
        WithMethod(SimpleNamespace(name="a")).data
