from typing import Any

from rest_framework import serializers

from core.serializers import FieldsBuiltOnce
from jobs.models import Job, JobEvent, JobStep
from jobs.runtime.registry import registered_job_types


class JobSerializer(FieldsBuiltOnce):
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "job_type",
            "status",
            "wait_reason",
            "wake_at",
            "priority",
            "input",
            "result",
            "attempts",
            "max_attempts",
            "error_type",
            "error_message",
            "idempotency_key",
            "request_id",
            "parent",
            "concurrency_key",
            "created_by",
            "cancel_requested",
            "created_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "tokens_in",
            "tokens_out",
            "cost",
        ]
        read_only_fields = fields


class JobCreateSerializer(serializers.Serializer):
    job_type = serializers.CharField(max_length=100)
    input = serializers.JSONField(
        required=False,
        default=dict,
        help_text=(
            "The job type's input. An agent's job names it as `agent_id` (agent-task, "
            "code-generation): it then counts as that agent's execution."
        ),
    )
    priority = serializers.IntegerField(min_value=0, max_value=9, default=5)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # DRF ignores unknown fields: a client still sending the removed `agent` would
        # get a job that is not its agent's without a word.
        if "agent" in self.initial_data:
            raise serializers.ValidationError(
                {
                    "agent": [
                        "Removed: name the agent in input.agent_id (agent-task, "
                        "code-generation), or use POST /api/v1/agents/{id}/execute/."
                    ]
                }
            )
        return attrs

    def validate_job_type(self, value: str) -> str:
        known = registered_job_types()
        if value not in known:
            raise serializers.ValidationError(
                f"Unknown job type {value!r}; known types: {', '.join(known)}."
            )
        return value

    def validate_input(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Expected a JSON object.")
        return value


class JobStepSerializer(serializers.ModelSerializer):
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = JobStep
        fields = [
            "key",
            "position",
            "kind",
            "status",
            "output",
            "error",
            "attempt",
            "started_at",
            "finished_at",
            "duration_seconds",
        ]


class JobEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = JobEvent
        fields = ["seq", "kind", "data", "created_at"]


class WorkerSerializer(serializers.Serializer):
    name = serializers.CharField()
    consuming = serializers.BooleanField(help_text="Taking new jobs from the job queue.")
    queues = serializers.ListField(child=serializers.CharField())
    concurrency = serializers.IntegerField(allow_null=True)
    processed = serializers.IntegerField(help_text="Tasks finished since the worker started.")
    active = serializers.IntegerField(help_text="Tasks running now.")
    active_jobs = serializers.ListField(child=serializers.CharField())
    pid = serializers.IntegerField(allow_null=True)
