"""/api/v1/jobs/: thin views over the job services, scoped to the caller's organization."""

import uuid
from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import filters, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import HasCapability, request_user
from accounts.roles import Capability, organization_of
from core.filters import FiltersBuiltOnce, UTCDateTimeFilter
from jobs import workers
from jobs.follow import event_number
from jobs.models import Job, JobStatus
from jobs.selectors import job_events, job_steps, jobs_of
from jobs.serializers import (
    JobCreateSerializer,
    JobEventSerializer,
    JobSerializer,
    JobStepSerializer,
    WorkerSerializer,
)
from jobs.services import job_cancel, job_get_or_create, job_retry


class JobFilter(FiltersBuiltOnce):
    # No DISTINCT: no join here can repeat a row, and DISTINCT compares JSON columns.
    status = django_filters.MultipleChoiceFilter(choices=JobStatus.choices, distinct=False)
    created_after = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Job
        fields = [
            "status",
            "job_type",
            "priority",
            "concurrency_key",
            "created_after",
            "created_before",
        ]


class JobViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = JobSerializer
    permission_classes = [HasCapability]
    capabilities = {
        "create": Capability.OPERATE,
        "cancel": Capability.OPERATE,
        "retry": Capability.OPERATE,
    }
    filterset_class = JobFilter
    filter_backends = [
        django_filters.rest_framework.DjangoFilterBackend,
        filters.SearchFilter,
        filters.OrderingFilter,
    ]
    search_fields = ["job_type", "idempotency_key", "error_message"]
    ordering_fields = ["created_at", "priority", "status", "finished_at"]
    ordering = ["-created_at"]

    def get_queryset(self) -> QuerySet[Job]:
        if "agent" in self.request.query_params:  # removed; ignoring it would list every job
            raise ValidationError(
                {
                    "agent": [
                        "Removed: filter by concurrency_key=agent:<id>, "
                        "or use /api/v1/agents/{id}/executions/."
                    ]
                }
            )
        return jobs_of(organization_of(self.request.user))

    def filter_queryset(self, queryset: QuerySet[Job]) -> QuerySet[Job]:
        # One job by id (detail, cancel, retry, steps, events): the filters are the
        # list's, and building them (a form, validated) costs more than the query.
        if self.action != "list":
            return queryset
        return super().filter_queryset(queryset)

    @extend_schema(
        request=JobCreateSerializer,
        responses={201: JobSerializer, 200: JobSerializer},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                description="Repeat a request safely: the same key returns the same job.",
            )
        ],
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = JobCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = request_user(request)
        job, created = job_get_or_create(
            created_by=user,
            idempotency_key=request.headers.get("Idempotency-Key", ""),
            organization=organization_of(user),
            **serializer.validated_data,
        )
        answer = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(JobSerializer(job).data, status=answer)

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        job = job_cancel(job=self.get_object(), user=request_user(request))
        return Response(JobSerializer(job).data)

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk: str | None = None) -> Response:
        job = job_retry(job=self.get_object(), user=request_user(request))
        return Response(JobSerializer(job).data)

    @extend_schema(responses=JobStepSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def steps(self, request: Request, pk: str | None = None) -> Response:
        steps = job_steps(self.get_object())
        return Response(JobStepSerializer(steps, many=True).data)

    @extend_schema(
        responses=JobEventSerializer(many=True),
        parameters=[OpenApiParameter("after", int, description="Only events with a higher seq.")],
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def events(self, request: Request, pk: str | None = None) -> Response:
        after = event_number(request.query_params.get("after", "0"))
        if after is None:
            raise ValidationError({"after": ["A non-negative integer is required."]})
        events = job_events(self.get_object().pk, after=after)
        return Response(JobEventSerializer(events, many=True).data)


class WorkerPoolSerializer(serializers.Serializer):
    n = serializers.IntegerField(
        min_value=1, max_value=workers.MAX_RESIZE, help_text="How many processes."
    )


class ControlsSharedWorkers(BasePermission):
    """Workers serve every organization: pausing or resizing them is for superusers
    (the people who run the installation), not for one organization's admins."""

    message = "workers serve every organization: only a superuser may control them"

    def has_permission(self, request: Request, view: Any) -> bool:
        if view.action in ("list", "retrieve"):
            return True
        return bool(request.user and request.user.is_superuser)


class WorkerViewSet(viewsets.ViewSet):
    """Celery workers: status for every member; pausing, resuming and resizing for
    superusers.

    Workers serve every organization, so this shows processes, never jobs' data.
    """

    permission_classes = [HasCapability, ControlsSharedWorkers]
    capabilities = {
        "start": Capability.ADMINISTER,
        "stop": Capability.ADMINISTER,
        "grow": Capability.ADMINISTER,
        "shrink": Capability.ADMINISTER,
    }
    lookup_value_regex = "[^/]+"

    @extend_schema(responses=WorkerSerializer(many=True))
    def list(self, request: Request) -> Response:
        shown = [self._scoped(status) for status in workers.workers_status()]
        return Response(WorkerSerializer(shown, many=True).data)

    @extend_schema(responses=WorkerSerializer)
    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(WorkerSerializer(self._call(workers.worker_status, pk)).data)

    @extend_schema(request=None, responses=WorkerSerializer)
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        return Response(WorkerSerializer(self._call(workers.worker_resume, pk)).data)

    @extend_schema(request=None, responses=WorkerSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str | None = None) -> Response:
        return Response(WorkerSerializer(self._call(workers.worker_pause, pk)).data)

    @extend_schema(request=WorkerPoolSerializer, responses=WorkerSerializer)
    @action(detail=True, methods=["post"])
    def grow(self, request: Request, pk: str | None = None) -> Response:
        """Add `n` processes to the worker's pool."""
        return Response(WorkerSerializer(self._resize(workers.worker_grow, pk)).data)

    @extend_schema(request=WorkerPoolSerializer, responses=WorkerSerializer)
    @action(detail=True, methods=["post"])
    def shrink(self, request: Request, pk: str | None = None) -> Response:
        """Stop `n` idle processes of the worker's pool; at least one must stay."""
        return Response(WorkerSerializer(self._resize(workers.worker_shrink, pk)).data)

    def _resize(self, fn: Any, name: str | None) -> dict[str, Any]:
        serializer = WorkerPoolSerializer(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        return self._call(fn, name, serializer.validated_data["n"])

    def _call(self, fn: Any, name: str | None, *args: Any) -> dict[str, Any]:
        return self._scoped(fn(name or "", *args))

    def _scoped(self, status: dict[str, Any]) -> dict[str, Any]:
        """A worker's running jobs, as far as the caller may know of them: their own
        organization's (a superuser's: all)."""
        user = request_user(self.request)
        if user.is_superuser:
            return status
        mine = {
            str(pk)
            for pk in jobs_of(organization_of(user))
            .filter(pk__in=[j for j in status["active_jobs"] if _is_uuid(j)])
            .values_list("pk", flat=True)
        }
        return {**status, "active_jobs": [j for j in status["active_jobs"] if j in mine]}


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        return False
    return True
