"""/api/v1/agents/: configure agents (admins), run them and chat with them (operators),
read them, their executions and statistics (everyone in the organization)."""

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import filters, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.generics import get_object_or_404  # a malformed id is a 404 too
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import HasCapability, request_organization, request_user
from accounts.roles import Capability, organization_of
from agents.models import Agent, AgentStatus
from agents.selectors import agent_jobs, agent_statistics
from agents.serializers import (
    AgentChatSerializer,
    AgentExecuteSerializer,
    AgentSerializer,
    AgentStatisticsSerializer,
)
from agents.services import agent_create, agent_delete, agent_execute, agent_update
from core.filters import FiltersBuiltOnce
from jobs.api import JobFilter
from jobs.models import JobStatus
from jobs.serializers import JobSerializer


class AgentFilter(FiltersBuiltOnce):
    status = django_filters.ChoiceFilter(choices=AgentStatus.choices)
    provider = django_filters.CharFilter()

    class Meta:
        model = Agent
        fields = ["status", "provider"]


class AgentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = AgentSerializer
    permission_classes = [HasCapability]
    capabilities = {
        "create": Capability.ADMINISTER,
        "partial_update": Capability.ADMINISTER,
        "update": Capability.ADMINISTER,
        "destroy": Capability.ADMINISTER,
        "execute": Capability.OPERATE,
        "chat": Capability.OPERATE,
    }
    filterset_class = AgentFilter
    filter_backends = [
        django_filters.rest_framework.DjangoFilterBackend,
        filters.SearchFilter,
        filters.OrderingFilter,
    ]
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at", "updated_at", "status"]
    ordering = ["name"]

    def get_queryset(self) -> QuerySet[Agent]:
        organization = organization_of(self.request.user)
        if organization is None:
            return Agent.objects.none()
        return Agent.objects.alive().filter(organization=organization).select_related("created_by")

    def _fields(self, request: Request, *, partial: bool) -> dict[str, Any]:
        body = AgentSerializer(data=request.data, partial=partial)
        body.is_valid(raise_exception=True)
        return dict(body.validated_data)

    def create(self, request: Request) -> Response:
        agent = agent_create(
            organization=request_organization(request),
            created_by=request_user(request),
            **self._fields(request, partial=False),
        )
        return Response(AgentSerializer(agent).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, pk: str | None = None) -> Response:
        agent = agent_update(agent=self.get_object(), **self._fields(request, partial=False))
        return Response(AgentSerializer(agent).data)

    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        agent = agent_update(agent=self.get_object(), **self._fields(request, partial=True))
        return Response(AgentSerializer(agent).data)

    @extend_schema(responses={204: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        """Soft delete: the agent's jobs and conversations are kept."""
        agent_delete(agent=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=AgentExecuteSerializer, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def execute(self, request: Request, pk: str | None = None) -> Response:
        """Start an agent-task job; follow it at /api/v1/jobs/{id}/stream/."""
        body = AgentExecuteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        job = agent_execute(
            agent=self.get_object(),
            user=request_user(request),
            idempotency_key=request.headers.get("Idempotency-Key", ""),  # fitted by job_create
            **body.validated_data,
        )
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=AgentChatSerializer, responses={202: JobSerializer})
    @action(detail=True, methods=["post"])
    def chat(self, request: Request, pk: str | None = None) -> Response:
        """One message of a conversation: the reply streams over the job's SSE stream,
        and the session's history is the agent's short-term memory."""
        body = AgentChatSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        job = agent_execute(
            agent=self.get_object(),
            user=request_user(request),
            task=body.validated_data["message"],
            session_id=body.validated_data["session_id"],
        )
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        responses=JobSerializer(many=True),
        parameters=[OpenApiParameter("status", str, many=True, enum=JobStatus.values)],
    )
    @action(detail=True, methods=["get"])
    def executions(self, request: Request, pk: str | None = None) -> Response:
        """The agent's jobs, newest first (filters as on /jobs/)."""
        # Not get_object(): it would apply the agent filters (status=...) to the agent.
        agent = get_object_or_404(self.get_queryset(), pk=pk)
        jobs = agent_jobs(agent).select_related("created_by")
        found = JobFilter(
            request.query_params, queryset=jobs.order_by("-created_at"), request=request
        )
        if not found.is_valid():
            raise ValidationError(found.errors)
        page = self.paginate_queryset(found.qs)
        return self.get_paginated_response(JobSerializer(page, many=True).data)

    @extend_schema(responses=AgentStatisticsSerializer)
    @action(detail=True, methods=["get"])
    def statistics(self, request: Request, pk: str | None = None) -> Response:
        return Response(agent_statistics(self.get_object()))
