"""The one base class of errors meant for people.

Services raise an `ApplicationError` (or a subclass) when a request cannot be carried
out as asked: bad input, a state that does not allow it. Its message is written for
the person who asked; `fields` maps an input field (a dotted path) to its messages.
`config/exceptions.py` turns every one of them into the API's error shape with its
`status_code` and `code`, in one place; the admin and the command line show the
message. Anything else that escapes a view is a bug (a 500 with no details).
"""

from typing import Any


class ApplicationError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(self, message: str, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}

    def details(self) -> dict[str, Any]:
        """Extra members of the error body (e.g. the decision a conflict ran into)."""
        return {}


class NotFound(ApplicationError):
    status_code = 404
    code = "not_found"


class Conflict(ApplicationError):
    """The current state does not allow the request (already decided, already ended)."""

    status_code = 409
    code = "conflict"
