"""core.filters.FiltersBuiltOnce: filters and form class made once per class; each
filter set still validates and filters by its own data."""

import django_filters
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import QueryDict

from checkpoints.api import CheckpointFilter
from checkpoints.models import Checkpoint
from core.filters import FiltersBuiltOnce


def test_filter_sets_share_their_filters_and_form_class_but_not_their_data():
    pending = CheckpointFilter(QueryDict("status=pending"), Checkpoint.objects.all())
    bad = CheckpointFilter(QueryDict("status=nonsense&kind=approval"), Checkpoint.objects.all())

    assert pending.filters is bad.filters
    assert pending.get_form_class() is bad.get_form_class()
    assert pending.is_valid() and not bad.is_valid()
    assert "status" in bad.errors and "status" not in pending.errors
    assert pending.form.cleaned_data["status"] == ["pending"]
    where = str(pending.qs.query).split(" WHERE ")[1]
    assert where.startswith('"checkpoints_checkpoint"."status" = pending ORDER BY'), where


def test_a_filter_that_needs_its_filter_set_or_request_is_refused():
    class ByMethod(FiltersBuiltOnce):
        title = django_filters.CharFilter(method="by_title")

        class Meta:
            model = Checkpoint
            fields = ["title"]

    with pytest.raises(ImproperlyConfigured, match="ByMethod.title"):
        ByMethod(QueryDict("title=x"), Checkpoint.objects.all())
