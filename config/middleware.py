"""Request-wide middleware."""

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest
from django.http.response import HttpResponseBase

from core import logs

REQUEST_ID_HEADER = "X-Request-ID"


class RequestIdMiddleware:
    """Bind a request id to the request's log lines (and the jobs it creates) and
    return it in the X-Request-ID response header.

    A caller's (or proxy's) X-Request-ID is kept if it is a plain token, so one id
    follows a request across services; otherwise a new one is made. Sync and async
    capable, so the async SSE view runs without a thread switch.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        request_id = logs.clean_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]  # for django.request's lines
        with logs.bind(request_id=request_id):
            response: HttpResponseBase = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = logs.clean_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]  # for django.request's lines
        with logs.bind(request_id=request_id):
            response: HttpResponseBase = await self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        return response
