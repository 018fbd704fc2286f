"""Shared django-filter pieces."""

import copy
from datetime import UTC, datetime
from typing import Any

import django_filters
from django.core.exceptions import ImproperlyConfigured
from django.db.models import QuerySet
from django.forms import Form
from django.http import QueryDict
from django_filters.filters import QuerySetRequestMixin
from rest_framework.exceptions import ValidationError


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date-time, compared in UTC. PostgreSQL refuses offsets beyond ±15:59
    that ISO 8601 allows (+23:16 made a 500; schemathesis found it)."""

    def filter(self, qs: QuerySet[Any], value: datetime | None) -> QuerySet[Any]:
        if value is not None:
            try:
                value = value.astimezone(UTC)
            except OverflowError:
                raise ValidationError({self.field_name: ["Date-time out of range."]}) from None
        return super().filter(qs, value)


class FiltersBuiltOnce(django_filters.FilterSet):
    """A FilterSet whose filters and form class are made once per class, not for every
    request: django-filter deep-copies every filter and builds a form class for each
    one (1.2 ms of a checkpoint list's 8). The filters are shared, so none may depend on
    the request or the filter set (`method=`, a queryset made from the request)."""

    def __init__(
        self,
        data: Any = None,
        queryset: QuerySet[Any] | None = None,
        *,
        request: Any = None,
        prefix: str | None = None,
    ) -> None:
        # django-filter's __init__, without its deep copy of the filters.
        self.is_bound = data is not None
        self.data = data or QueryDict()
        self.queryset = self._meta.model._default_manager.all() if queryset is None else queryset
        self.request = request
        self.form_prefix = prefix
        self.filters = self._shared_filters()

    @classmethod
    def _shared_filters(cls) -> dict[str, django_filters.Filter]:
        shared = cls.__dict__.get("_filters_built_once")
        if shared is None:
            shared = copy.deepcopy(cls.base_filters)
            for name, filter_ in shared.items():
                if filter_.method is not None or isinstance(filter_, QuerySetRequestMixin):
                    raise ImproperlyConfigured(
                        f"{cls.__name__}.{name} depends on its filter set or request; "
                        "it cannot be shared (use django_filters.FilterSet)"
                    )
                filter_.model = cls._meta.model
            cls._filters_built_once = shared
        return shared

    def get_form_class(self) -> type[Form]:
        cls = type(self)
        form = cls.__dict__.get("_form_class_built_once")
        if form is None:
            form = cls._form_class_built_once = super().get_form_class()
        return form
