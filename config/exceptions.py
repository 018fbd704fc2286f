"""One JSON shape for every API error, and every application error mapped to HTTP here.

    {"error": {"code": "conflict", "message": "...", "fields": {...}, ...}}

No stack traces, no internals: an `ApplicationError` (core/errors.py) carries a
message written for people, its status code and code, its fields and extra details.
"""

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler

from core.errors import ApplicationError


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        body: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.fields:
            body["fields"] = exc.fields
        return Response({"error": {**body, **exc.details()}}, status=exc.status_code)
    if isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    if isinstance(exc, Http404):  # a look-up by id: "not_found", as every other 404
        exc = exceptions.NotFound(str(exc) or None)
    response = exception_handler(exc, context)
    if response is None:
        return None  # unexpected: Django's 500 handler (no details when DEBUG is off)
    detail = response.data
    if isinstance(exc, exceptions.ValidationError):
        fields = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        response.data = {
            "error": {"code": "invalid", "message": "Invalid input.", "fields": fields}
        }
    else:
        message = detail.get("detail", detail) if isinstance(detail, dict) else detail
        code = getattr(exc, "default_code", "error")
        response.data = {"error": {"code": code, "message": str(message)}}
    return response
