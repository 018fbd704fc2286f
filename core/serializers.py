"""Serializer helpers shared by the apps' APIs."""

import copy
from typing import Any

from django.utils.functional import cached_property
from rest_framework import serializers
from rest_framework.utils.serializer_helpers import BindingDict


def _bind(serializer: serializers.Serializer[Any]) -> BindingDict:
    """The serializer's fields, copied and bound to it: what DRF's `fields` does."""
    fields = BindingDict(serializer)
    for name, field in serializer.get_fields().items():
        fields[name] = field
    return fields


# A serializer that writes an answer (made with an instance, no data and no context)
# uses one set of bound fields per class instead of a copy of its own: DRF deep-copies
# every field, nested serializers' too, for every serializer made (about a millisecond
# for a decision's answer). Writing a representation reads fields and changes none, and
# without a context nothing in them depends on the request. Serializers given data (a
# request body) or a context (the generic views') get their own copies, as in DRF.
# (A comment, not a docstring: the schema would show it as the description of every
# serializer built on it.)
class SharedOutputFields(serializers.Serializer):
    @cached_property
    def fields(self) -> BindingDict:
        if hasattr(self, "initial_data") or self.context:
            return _bind(self)
        cls = type(self)
        shared = cls.__dict__.get("_shared_fields")
        if shared is None:
            # Bound to a blank serializer of the class, so that no instance or answer
            # is kept alive by the class.
            shared = cls._shared_fields = _bind(cls())
        return shared


# A ModelSerializer whose fields are built from the model once per class, then copied
# for each instance, as DRF copies declared fields. DRF builds them again for every
# serializer made (2.2 ms for a job's 25 fields, a tenth of a job create; the copy takes
# 0.9 ms, which answers avoid: see SharedOutputFields). The result is the same: nothing
# in a field depends on the instance or the request until it is bound.
class FieldsBuiltOnce(SharedOutputFields, serializers.ModelSerializer):
    def get_fields(self) -> dict[str, Any]:
        cls = type(self)
        built = cls.__dict__.get("_fields_built_once")
        if built is None:
            built = super().get_fields()
            cls._fields_built_once = built
        return copy.deepcopy(built)
