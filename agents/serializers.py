from rest_framework import serializers

from agents.models import CONFIG_FIELDS, Agent


class AgentStatisticsSerializer(serializers.Serializer):
    executions = serializers.IntegerField()
    finished = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    success_rate = serializers.FloatField(allow_null=True, help_text="succeeded / finished")
    average_tokens_in = serializers.FloatField()
    average_tokens_out = serializers.FloatField()
    average_cost = serializers.CharField(
        allow_null=True, help_text="USD; null when no finished job has a known cost"
    )
    average_duration_seconds = serializers.FloatField(allow_null=True)


class AgentSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    tools = serializers.ListField(child=serializers.CharField(), required=False)
    parameters = serializers.DictField(required=False)
    personality = serializers.DictField(required=False)

    class Meta:
        model = Agent
        fields = ["id", *CONFIG_FIELDS, "created_by", "created_at", "updated_at"]
        read_only_fields = ["id", "created_by", "created_at", "updated_at"]
        extra_kwargs = {"status": {"help_text": "idle, busy, offline (refuses new runs) or error"}}


class AgentExecuteSerializer(serializers.Serializer):
    task = serializers.CharField()
    context = serializers.DictField(required=False, default=dict)
    max_tokens = serializers.IntegerField(required=False, min_value=1, max_value=200_000)
    session_id = serializers.CharField(required=False, default="", max_length=100, allow_blank=True)
    priority = serializers.IntegerField(min_value=0, max_value=9, default=5)


class AgentChatSerializer(serializers.Serializer):
    session_id = serializers.CharField(max_length=100)
    message = serializers.CharField()
