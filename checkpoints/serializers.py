from rest_framework import serializers

from checkpoints.models import Checkpoint, CheckpointDecision


class DecisionSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = CheckpointDecision
        fields = ["id", "user", "verdict", "reason", "payload", "created_at"]


class CheckpointSerializer(serializers.ModelSerializer):
    job_type = serializers.CharField(source="job.job_type", read_only=True)
    decisions = DecisionSerializer(many=True, read_only=True)

    class Meta:
        model = Checkpoint
        fields = [
            "id",
            "job",
            "job_type",
            "key",
            "kind",
            "title",
            "description",
            "payload",
            "payload_schema",
            "input_schema",
            "status",
            "required_approvals",
            "expires_at",
            "on_timeout",
            "opened_at",
            "decided_at",
            "decisions",
        ]
        read_only_fields = fields


class ApproveSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")
    payload = serializers.JSONField(required=False, allow_null=True, default=None)


class RejectSerializer(serializers.Serializer):
    reason = serializers.CharField()


class SubmitSerializer(serializers.Serializer):
    data = serializers.JSONField()
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class DecidedSerializer(serializers.Serializer):
    """What a decision returns: the decision made and the checkpoint after it."""

    decision = DecisionSerializer()
    checkpoint = CheckpointSerializer()
