from typing import Any

from rest_framework import serializers

from agents.models import Agent, Job, JobEvent, JobStep
from agents.runtime.registry import registered_job_types


class JobSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True,
                                              allow_null=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Job
        fields = ["id", "job_type", "status", "wait_reason", "wake_at", "priority", "input",
                  "result", "attempts", "max_attempts", "error_type", "error_message",
                  "idempotency_key", "request_id", "parent", "agent", "created_by",
                  "cancel_requested",
                  "created_at",
                  "started_at", "finished_at", "duration_seconds", "tokens_in", "tokens_out",
                  "cost"]
        read_only_fields = fields


class JobCreateSerializer(serializers.Serializer):
    job_type = serializers.CharField(max_length=100)
    input = serializers.JSONField(required=False, default=dict)
    priority = serializers.IntegerField(min_value=0, max_value=9, default=5)
    agent = serializers.IntegerField(required=False, help_text="An agent of your organization: "
                                     "the job is counted as its execution.")

    def validate_job_type(self, value: str) -> str:
        known = registered_job_types()
        if value not in known:
            raise serializers.ValidationError(
                f"Unknown job type {value!r}; known types: {', '.join(known)}.")
        return value

    def validate_input(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Expected a JSON object.")
        return value


class JobStepSerializer(serializers.ModelSerializer):
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = JobStep
        fields = ["key", "position", "kind", "status", "output", "error", "attempt",
                  "started_at", "finished_at", "duration_seconds"]


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


class AgentStatisticsSerializer(serializers.Serializer):
    executions = serializers.IntegerField()
    finished = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True, help_text="succeeded / finished")
    average_tokens_in = serializers.FloatField()
    average_tokens_out = serializers.FloatField()
    average_cost = serializers.CharField(allow_null=True,
                                         help_text="USD; null when no finished job has a "
                                         "known cost")
    average_duration_seconds = serializers.FloatField(allow_null=True)


class AgentSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True,
                                              allow_null=True)
    tools = serializers.ListField(child=serializers.CharField(), required=False)
    parameters = serializers.DictField(required=False)
    personality = serializers.DictField(required=False)

    class Meta:
        model = Agent
        fields = ["id", "name", "description", "status", "provider", "model", "parameters",
                  "instructions", "personality", "tools", "history_messages",
                  "context_window_tokens", "max_turns", "max_concurrency", "on_tool_rejection",
                  "created_by", "created_at", "updated_at"]
        read_only_fields = ["id", "created_by", "created_at", "updated_at"]
        extra_kwargs = {"status": {"help_text": "idle, busy, offline (refuses new runs) "
                                                "or error"}}


class AgentExecuteSerializer(serializers.Serializer):
    task = serializers.CharField()
    context = serializers.DictField(required=False, default=dict)
    max_tokens = serializers.IntegerField(required=False, min_value=1, max_value=200_000)
    session_id = serializers.CharField(required=False, default="", max_length=100,
                                       allow_blank=True)
    priority = serializers.IntegerField(min_value=0, max_value=9, default=5)


class AgentChatSerializer(serializers.Serializer):
    session_id = serializers.CharField(max_length=100)
    message = serializers.CharField()
