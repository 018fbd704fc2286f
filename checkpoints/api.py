"""/api/v1/checkpoints/: review and decide, through the same services as the admin and CLI."""

from collections.abc import Callable
from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import filters, mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import HasCapability
from accounts.roles import Capability, organization_of
from checkpoints import services
from checkpoints.models import Checkpoint, CheckpointDecision, CheckpointKind, CheckpointStatus
from checkpoints.selectors import (
    checkpoint_of,
    checkpoint_rows,
    checkpoints_of,
    job_checkpoints,
    list_rows,
)
from checkpoints.serializers import (
    ApproveSerializer,
    CheckpointSerializer,
    CheckpointSummarySerializer,
    DecidedSerializer,
    RejectSerializer,
    SubmitSerializer,
)
from core.filters import FiltersBuiltOnce, UTCDateTimeFilter
from jobs.selectors import jobs_of


class CheckpointFilter(FiltersBuiltOnce):
    # No DISTINCT: no join here can repeat a row, and DISTINCT compares JSON columns.
    status = django_filters.MultipleChoiceFilter(choices=CheckpointStatus.choices, distinct=False)
    kind = django_filters.ChoiceFilter(choices=CheckpointKind.choices)
    # By id, not a choice among all jobs: another organization's job and an unknown one
    # both simply match nothing.
    job = django_filters.UUIDFilter(field_name="job_id")
    job_type = django_filters.CharFilter(field_name="job__job_type")
    opened_after = UTCDateTimeFilter(field_name="opened_at", lookup_expr="gte")
    opened_before = UTCDateTimeFilter(field_name="opened_at", lookup_expr="lt")

    class Meta:
        model = Checkpoint
        fields = ["status", "kind", "job", "job_type", "opened_after", "opened_before"]


class CheckpointViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = CheckpointSerializer
    permission_classes = [HasCapability]
    capabilities = {
        "approve": Capability.DECIDE,
        "reject": Capability.DECIDE,
        "submit": Capability.DECIDE,
    }
    filterset_class = CheckpointFilter
    filter_backends = [
        django_filters.rest_framework.DjangoFilterBackend,
        filters.SearchFilter,
        filters.OrderingFilter,
    ]
    search_fields = ["title", "description", "key"]
    ordering_fields = ["opened_at", "decided_at", "status"]

    def get_queryset(self) -> QuerySet[Checkpoint]:
        return checkpoints_of(organization_of(self.request.user))

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        return CheckpointSummarySerializer if self.action == "list" else CheckpointSerializer

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # Rows read as values and written as they are (checkpoints.selectors.list_rows):
        # no model instances, no serializer fields per row, no payloads.
        rows = checkpoint_rows(self.filter_queryset(self.get_queryset()))
        page = self.paginate_queryset(rows)
        if page is None:
            return Response(list_rows(list(rows)))
        return self.get_paginated_response(list_rows(page))

    def filter_queryset(self, queryset: QuerySet[Checkpoint]) -> QuerySet[Checkpoint]:
        if self.action != "list":  # one checkpoint by id: the filters are the list's
            return queryset
        queryset = super().filter_queryset(queryset)
        if self.request.query_params.get("ordering"):
            return queryset
        if len(set(self.request.query_params.getlist("status"))) == 1:
            # One status (the usual "what is pending?"): oldest first, read in order
            # from the (organization, status, opened_at) index with no sort.
            return queryset.order_by("opened_at", "pk")
        return queryset.pending_first()  # type: ignore[attr-defined]

    def _decide(self, service: Callable[..., CheckpointDecision], **arguments: Any) -> Response:
        """Decide through `service` the checkpoint of the URL, unread: the service locks
        and reads it in one statement (the usual look-up by id would read it first),
        and finds nothing unless it is of the caller's organization."""
        checkpoint = checkpoint_of(organization_of(self.request.user), self.kwargs["pk"])
        try:
            if checkpoint is None:
                raise Checkpoint.DoesNotExist
            decision = service(checkpoint=checkpoint, user=self.request.user, **arguments)
        except Checkpoint.DoesNotExist:
            raise NotFound("No Checkpoint matches the given query.") from None
        # The services return the decision on the checkpoint they locked and settled,
        # its decisions included: nothing to read again.
        return Response(
            DecidedSerializer({"decision": decision, "checkpoint": decision.checkpoint}).data
        )

    @extend_schema(request=ApproveSerializer, responses={200: DecidedSerializer})
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        body = ApproveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._decide(services.checkpoint_approve, **body.validated_data)

    @extend_schema(request=RejectSerializer, responses={200: DecidedSerializer})
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        body = RejectSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._decide(services.checkpoint_reject, **body.validated_data)

    @extend_schema(request=SubmitSerializer, responses={200: DecidedSerializer})
    @action(detail=True, methods=["post"])
    def submit(self, request: Request, pk: str | None = None) -> Response:
        body = SubmitSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return self._decide(services.checkpoint_submit_input, **body.validated_data)


class JobCheckpointViewSet(viewsets.GenericViewSet):
    """GET /api/v1/jobs/{id}/checkpoints/: one job's checkpoints, oldest first. Served
    by this app, not the jobs API: the runtime knows nothing of checkpoints."""

    serializer_class = CheckpointSerializer
    permission_classes = [HasCapability]
    pagination_class = None

    def get_queryset(self) -> QuerySet[Checkpoint]:
        job = get_object_or_404(
            jobs_of(organization_of(self.request.user)), pk=self.kwargs["job_id"]
        )
        return job_checkpoints(job)

    @extend_schema(responses=CheckpointSerializer(many=True))
    def list(self, request: Request, job_id: str) -> Response:
        return Response(CheckpointSerializer(self.get_queryset(), many=True).data)
