"""core.serializers.SharedOutputFields: answers share one set of bound fields per class;
what reads a request body or a context gets its own, as in DRF."""

import gc
import weakref

import pytest

from checkpoints.serializers import CheckpointSerializer, DecidedSerializer
from jobs.models import Job
from jobs.serializers import JobSerializer

pytestmark = pytest.mark.django_db


def test_answers_share_fields_and_write_each_instance_as_its_own(acme):
    first = Job.objects.create(job_type="simple-task", organization=acme, input={"n": 1})
    second = Job.objects.create(job_type="simple-task", organization=acme, input={"n": 2})

    one, two = JobSerializer(first), JobSerializer(second)

    assert one.fields is two.fields
    assert (one.data["id"], one.data["input"]) == (str(first.pk), {"n": 1})
    assert (two.data["id"], two.data["input"]) == (str(second.pk), {"n": 2})
    # Nested serializers (a decision's checkpoint, its decisions) share theirs too.
    checkpoint_field = DecidedSerializer({}).fields["checkpoint"]
    assert checkpoint_field.fields is CheckpointSerializer().fields


def test_a_body_or_a_context_gets_fields_of_its_own(acme):
    job = Job.objects.create(job_type="simple-task", organization=acme)
    shared = JobSerializer(job).fields

    assert JobSerializer(data={}).fields is not shared
    with_context = JobSerializer(job, context={"request": None, "view": None})
    assert with_context.fields is not shared
    assert with_context.data == JobSerializer(job).data


def test_the_class_keeps_no_instance_alive(acme):
    job = Job.objects.create(job_type="simple-task", organization=acme)

    class Fresh(JobSerializer):  # a class whose shared fields this test builds
        class Meta(JobSerializer.Meta):
            pass

    assert Fresh(job).data["id"] == str(job.pk)
    held = weakref.ref(job)
    del job
    gc.collect()

    assert held() is None
