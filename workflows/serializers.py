from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from jobs.serializers import JobSerializer
from workflows.models import Event, TriggerRule, Workflow, WorkflowRun, WorkflowVersion
from workflows.selectors import run_nodes


class VersionSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = WorkflowVersion
        fields = ["number", "checksum", "definition", "created_by", "created_at"]
        read_only_fields = fields


class TriggerSerializer(serializers.ModelSerializer):
    class Meta:
        model = TriggerRule
        fields = [
            "kind",
            "event_name",
            "filter",
            "cron",
            "timezone",
            "next_fire_at",
            "last_fired_at",
        ]
        read_only_fields = fields


class WorkflowSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(
        source="current_version.number", read_only=True, allow_null=True
    )
    definition = serializers.JSONField(
        source="current_version.definition", read_only=True, allow_null=True
    )
    triggers = TriggerSerializer(many=True, read_only=True)
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Workflow
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "active",
            "version",
            "definition",
            "triggers",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class WorkflowCreateSerializer(serializers.Serializer):
    slug = serializers.SlugField(max_length=100)
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    definition = serializers.JSONField()


class WorkflowUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    active = serializers.BooleanField(required=False)
    definition = serializers.JSONField(
        required=False, help_text="Saved as a new version, made current."
    )


class DefinitionSerializer(serializers.Serializer):
    definition = serializers.JSONField()
    slug = serializers.SlugField(required=False, help_text="The workflow's slug, for cycles.")


class ValidationResultSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class RunInputSerializer(serializers.Serializer):
    input = serializers.JSONField(required=False, default=dict)
    priority = serializers.IntegerField(min_value=0, max_value=9, default=5)


class SetVersionSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1)


class MessageSerializer(serializers.Serializer):
    session_id = serializers.CharField(max_length=100)
    message = serializers.CharField()


class RunSerializer(serializers.ModelSerializer):
    workflow = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    job = JobSerializer(read_only=True)
    status = serializers.CharField(source="job.status", read_only=True)

    class Meta:
        model = WorkflowRun
        fields = [
            "job_id",
            "workflow",
            "version",
            "trigger",
            "session_id",
            "event",
            "status",
            "created_at",
            "job",
        ]
        read_only_fields = fields


class RunDetailSerializer(RunSerializer):
    nodes = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "nodes"]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_nodes(self, run: WorkflowRun) -> list[dict[str, Any]]:
        return run_nodes(run)


class EventSerializer(serializers.ModelSerializer):
    class Meta:
        model = Event
        fields = ["id", "name", "data", "idempotency_key", "source", "received_at"]
        read_only_fields = ["id", "received_at"]
        extra_kwargs = {"idempotency_key": {"required": False}, "source": {"required": False}}


class NodeTypeSerializer(serializers.Serializer):
    type = serializers.CharField()
    description = serializers.CharField()
    config_schema = serializers.DictField()
