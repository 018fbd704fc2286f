"""/api/v1/workflows/, /api/v1/workflow-runs/ and /api/v1/events/: thin views over the
workflow services, scoped to the caller's organization. Admins edit workflows,
operators run them and send events, everyone in the organization reads."""

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import filters, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import HasCapability, request_organization, request_user
from accounts.roles import Capability, organization_of
from core.filters import FiltersBuiltOnce, UTCDateTimeFilter
from jobs.models import JobStatus
from jobs.services import job_cancel, job_retry
from workflows import services
from workflows.events import event_send
from workflows.models import Event, Trigger, Workflow, WorkflowRun
from workflows.selectors import events_of, node_types, runs_of, workflows_of
from workflows.serializers import (
    DefinitionSerializer,
    EventSerializer,
    MessageSerializer,
    NodeTypeSerializer,
    RunDetailSerializer,
    RunInputSerializer,
    RunSerializer,
    SetVersionSerializer,
    ValidationResultSerializer,
    VersionSerializer,
    WorkflowCreateSerializer,
    WorkflowSerializer,
    WorkflowUpdateSerializer,
)

IDEMPOTENCY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    description="Repeat a request safely: the same key returns the same run.",
)


class WorkflowViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = WorkflowSerializer
    permission_classes = [HasCapability]
    capabilities = {
        "create": Capability.ADMINISTER,
        "partial_update": Capability.ADMINISTER,
        "set_version": Capability.ADMINISTER,
        "run": Capability.OPERATE,
        "message": Capability.OPERATE,
    }
    filter_backends = [filters.SearchFilter, filters.OrderingFilter]
    search_fields = ["slug", "name", "description"]
    ordering_fields = ["slug", "name", "created_at", "updated_at"]
    ordering = ["slug"]

    def get_queryset(self) -> QuerySet[Workflow]:
        return workflows_of(organization_of(self.request.user)).prefetch_related("triggers")

    @extend_schema(request=WorkflowCreateSerializer, responses={201: WorkflowSerializer})
    def create(self, request: Request) -> Response:
        body = WorkflowCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        workflow = services.workflow_create(
            organization=request_organization(request),
            created_by=request_user(request),
            **body.validated_data,
        )
        return Response(WorkflowSerializer(workflow).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=WorkflowUpdateSerializer, responses=WorkflowSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        """Name, description, active; a `definition` is saved as the new current version."""
        body = WorkflowUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        fields = dict(body.validated_data)
        workflow = self.get_object()
        if "definition" in fields:
            services.workflow_save(
                workflow=workflow,
                definition=fields.pop("definition"),
                created_by=request_user(request),
            )
        if fields:
            services.workflow_update(workflow=workflow, **fields)
        return Response(WorkflowSerializer(self.get_queryset().get(pk=workflow.pk)).data)

    @extend_schema(responses=VersionSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)
    def versions(self, request: Request, pk: str | None = None) -> Response:
        versions = self.get_object().versions.select_related("created_by").order_by("-number")
        return Response(VersionSerializer(versions, many=True).data)

    @extend_schema(request=SetVersionSerializer, responses=WorkflowSerializer)
    @action(detail=True, methods=["post"], url_path="set-version")
    def set_version(self, request: Request, pk: str | None = None) -> Response:
        """Make a version current (a rollback); runs in flight keep theirs."""
        body = SetVersionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        workflow = services.workflow_set_version(
            workflow=self.get_object(), number=body.validated_data["version"]
        )
        return Response(WorkflowSerializer(self.get_queryset().get(pk=workflow.pk)).data)

    @extend_schema(request=DefinitionSerializer, responses=ValidationResultSerializer)
    @action(detail=False, methods=["post"])
    def validate(self, request: Request) -> Response:
        """Check a definition without saving it: every problem, by field path."""
        body = DefinitionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        errors = services.definition_errors(
            organization=request_organization(request),
            definition=body.validated_data["definition"],
            slug=body.validated_data.get("slug"),
        )
        return Response({"valid": not errors, "errors": errors})

    @extend_schema(responses=NodeTypeSerializer(many=True))
    @action(detail=False, methods=["get"], url_path="node-types", pagination_class=None)
    def node_types(self, request: Request) -> Response:
        """The node types and the JSON Schema of each one's config."""
        return Response(node_types())

    @extend_schema(
        request=RunInputSerializer,
        responses={201: RunSerializer, 200: RunSerializer},
        parameters=[IDEMPOTENCY],
    )
    @action(detail=True, methods=["post"])
    def run(self, request: Request, pk: str | None = None) -> Response:
        """Start a run with `input` (checked against the workflow's input_schema)."""
        body = RunInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key", "")  # made to fit by run_key
        user = request_user(request)
        workflow = self.get_object()
        earlier = (
            WorkflowRun.objects.filter(
                workflow=workflow,
                job__created_by=user,
                job__idempotency_key=services.run_key(workflow, key),
            ).first()
            if key
            else None
        )
        if earlier is not None:
            return Response(RunSerializer(earlier).data)
        run = services.workflow_run_start(
            workflow=workflow,
            input=body.validated_data["input"],
            priority=body.validated_data["priority"],
            created_by=user,
            idempotency_key=key,
        )
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=MessageSerializer, responses={202: RunSerializer})
    @action(detail=True, methods=["post"])
    def message(self, request: Request, pk: str | None = None) -> Response:
        """A chat message to a workflow with a message trigger: a run whose input is the
        message and the session's history; its output is the reply (follow the run's job
        at /api/v1/jobs/{job_id}/stream/)."""
        body = MessageSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run = services.workflow_message(
            workflow=self.get_object(),
            session_id=body.validated_data["session_id"],
            text=body.validated_data["message"],
            created_by=request_user(request),
        )
        return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class RunFilter(FiltersBuiltOnce):
    status = django_filters.MultipleChoiceFilter(
        field_name="job__status", choices=JobStatus.choices, distinct=False
    )
    workflow = django_filters.CharFilter(field_name="workflow__slug")
    trigger = django_filters.ChoiceFilter(choices=Trigger.choices)
    created_after = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = WorkflowRun
        fields = ["status", "workflow", "trigger", "session_id", "created_after", "created_before"]


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Runs, newest first; a run's detail has the state of every node."""

    serializer_class = RunSerializer
    permission_classes = [HasCapability]
    capabilities = {"cancel": Capability.OPERATE, "retry": Capability.OPERATE}
    lookup_field = "job"  # a run is named by its job's id
    filterset_class = RunFilter
    filter_backends = [django_filters.rest_framework.DjangoFilterBackend, filters.OrderingFilter]
    ordering_fields = ["created_at"]
    ordering = ["-created_at"]

    def get_queryset(self) -> QuerySet[WorkflowRun]:
        return runs_of(organization_of(self.request.user)).select_related("job__created_by")

    @extend_schema(responses=RunDetailSerializer)
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(RunDetailSerializer(self.get_object()).data)

    @extend_schema(request=None, responses=RunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, job: str | None = None) -> Response:
        """Cancel the run; its branches and child runs are cancelled with it."""
        run = self.get_object()
        job_cancel(job=run.job, user=request_user(request))
        return Response(RunSerializer(self.get_queryset().get(pk=run.pk)).data)

    @extend_schema(request=None, responses=RunSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, job: str | None = None) -> Response:
        """Run a failed or cancelled run again from the node that failed."""
        run = self.get_object()
        job_retry(job=run.job, user=request_user(request))
        return Response(RunSerializer(self.get_queryset().get(pk=run.pk)).data)


class EventViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    """Events of the organization, newest first. Sending one wakes the runs waiting for
    it and starts the workflows it triggers; a repeated `idempotency_key` (or
    Idempotency-Key header) returns the first event and does nothing more."""

    serializer_class = EventSerializer
    permission_classes = [HasCapability]
    capabilities = {"create": Capability.OPERATE}
    filter_backends = [django_filters.rest_framework.DjangoFilterBackend]
    filterset_fields = ["name", "source"]

    def get_queryset(self) -> QuerySet[Event]:
        return events_of(organization_of(self.request.user)).order_by("-received_at")

    @extend_schema(
        request=EventSerializer,
        responses={201: EventSerializer, 200: EventSerializer},
        parameters=[IDEMPOTENCY],
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        sent = request.data
        header = request.headers.get("Idempotency-Key", "")
        if header and isinstance(sent, dict) and not sent.get("idempotency_key"):
            sent = {**sent, "idempotency_key": header}  # held to the field's rules
        body = EventSerializer(data=sent)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        event, created = event_send(
            organization=request_organization(request),
            name=data["name"],
            data=data.get("data", {}),
            idempotency_key=data.get("idempotency_key", ""),
            source=data.get("source") or f"api:{request_user(request).get_username()}",
            created_by=request_user(request),
        )
        return Response(
            EventSerializer(event).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
