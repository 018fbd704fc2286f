"""One JSON shape for every API error, and the domain errors mapped to HTTP.

    {"error": {"code": "conflict", "message": "...", "fields": {...}, ...}}

No stack traces, no internals: domain errors carry messages written for people.
"""

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from checkpoints.services import CheckpointConflict, CheckpointError, CheckpointValidationError
from jobs.runtime.errors import UnknownJobType
from jobs.services import JobConflict, JobError


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    extra: dict[str, Any] = {}
    if isinstance(exc, CheckpointConflict):
        if exc.decision is not None:
            from checkpoints.serializers import DecisionSerializer

            extra["decision"] = DecisionSerializer(exc.decision).data
        return _error(status.HTTP_409_CONFLICT, "conflict", str(exc), **extra)
    if isinstance(exc, CheckpointValidationError):
        return _error(status.HTTP_400_BAD_REQUEST, "invalid", str(exc), fields=exc.errors)
    if isinstance(exc, JobConflict):
        return _error(status.HTTP_409_CONFLICT, "conflict", str(exc))
    if isinstance(exc, UnknownJobType):
        return _error(status.HTTP_400_BAD_REQUEST, "invalid", str(exc),
                      fields={"job_type": [str(exc)]})
    if isinstance(exc, JobError | CheckpointError):
        return _error(status.HTTP_400_BAD_REQUEST, "invalid", str(exc))
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = exception_handler(exc, context)
    if response is None:
        return None  # unexpected: Django's 500 handler (no details when DEBUG is off)
    detail = response.data
    if isinstance(exc, exceptions.ValidationError):
        fields = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        response.data = {"error": {"code": "invalid", "message": "Invalid input.",
                                   "fields": fields}}
    else:
        message = detail.get("detail", detail) if isinstance(detail, dict) else detail
        code = getattr(exc, "default_code", "error")
        response.data = {"error": {"code": code, "message": str(message)}}
    return response


def _error(status_code: int, code: str, message: str, **extra: Any) -> Response:
    return Response({"error": {"code": code, "message": message, **extra}}, status=status_code)
