from rest_framework import serializers

from checkpoints.models import Checkpoint, CheckpointDecision
from core.serializers import FieldsBuiltOnce, SharedOutputFields


class DecisionSerializer(FieldsBuiltOnce):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = CheckpointDecision
        fields = ["id", "user", "verdict", "reason", "payload", "created_at"]


class DecisionSummarySerializer(FieldsBuiltOnce):
    """A decision as the checkpoint list shows it: without its payload."""

    user = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = CheckpointDecision
        fields = ["id", "user", "verdict", "reason", "created_at"]


# A list row's fields; a checkpoint's detail has these and its payload and schemas.
SUMMARY_FIELDS = [
    "id",
    "job",
    "job_type",
    "key",
    "kind",
    "title",
    "description",
    "status",
    "required_approvals",
    "expires_at",
    "on_timeout",
    "opened_at",
    "decided_at",
    "decisions",
]


class CheckpointSerializer(FieldsBuiltOnce):
    job_type = serializers.CharField(source="job.job_type", read_only=True)
    decisions = DecisionSerializer(many=True, read_only=True)

    class Meta:
        model = Checkpoint
        fields = [*SUMMARY_FIELDS, "payload", "payload_schema", "input_schema"]
        read_only_fields = fields


class CheckpointSummarySerializer(FieldsBuiltOnce):
    """A row of GET /api/v1/checkpoints/: a reviewer's queue, without the payloads and
    schemas (a checkpoint's detail has them; a list of 50 need not carry 50 diffs).

    Fetch a checkpoint (`GET /api/v1/checkpoints/{id}/`) for its payload."""

    # The view builds these rows from the database without model instances
    # (checkpoints.selectors.list_rows); this serializer documents them in the schema,
    # and tests hold the two to the same output.
    job_type = serializers.CharField(source="job.job_type", read_only=True)
    decisions = DecisionSummarySerializer(many=True, read_only=True)

    class Meta:
        model = Checkpoint
        fields = SUMMARY_FIELDS
        read_only_fields = fields


class ApproveSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="")
    payload = serializers.JSONField(required=False, allow_null=True, default=None)


class RejectSerializer(serializers.Serializer):
    reason = serializers.CharField()


class SubmitSerializer(serializers.Serializer):
    data = serializers.JSONField()
    reason = serializers.CharField(required=False, allow_blank=True, default="")


class DecidedSerializer(SharedOutputFields):
    """What a decision returns: the decision made and the checkpoint after it."""

    decision = DecisionSerializer()
    checkpoint = CheckpointSerializer()
