from django.conf import settings
from django.contrib import admin
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from accounts.api import ApiTokenViewSet, MemberViewSet
from agents.api import AgentViewSet
from checkpoints.api import CheckpointViewSet, JobCheckpointViewSet
from core.metrics.views import metrics
from jobs.api import JobViewSet, WorkerViewSet
from jobs.stream import job_stream
from workflows.api import EventViewSet, RunViewSet, WorkflowViewSet

router = DefaultRouter()
router.register("agents", AgentViewSet, basename="agent")
router.register("jobs", JobViewSet, basename="job")
router.register("checkpoints", CheckpointViewSet, basename="checkpoint")
router.register("workers", WorkerViewSet, basename="worker")
router.register("members", MemberViewSet, basename="member")
router.register("tokens", ApiTokenViewSet, basename="token")
router.register("workflows", WorkflowViewSet, basename="workflow")
router.register("workflow-runs", RunViewSet, basename="workflow-run")
router.register("events", EventViewSet, basename="event")


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up (liveness)."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """The database and the broker are reachable (readiness). No details leak."""
    from config.celery import app

    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "unreachable"
    try:
        with app.connection_for_read(settings.CELERY_BROKER_URL) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception:
        checks["broker"] = "unreachable"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", **checks}, status=200 if ready else 503
    )


urlpatterns = [
    # Until the dashboard exists, the admin is where people review and steer work.
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    # Jobs were the agents app's until the runtime got a package of its own: links and
    # bookmarks to their admin pages keep working.
    re_path(
        r"^admin/agents/job/(?P<rest>.*)$",
        RedirectView.as_view(url="/admin/jobs/job/%(rest)s", permanent=True, query_string=True),
    ),
    path("admin/", admin.site.urls),
    path("api/v1/jobs/<uuid:job_id>/stream/", job_stream, name="job-stream"),
    path(
        "api/v1/jobs/<uuid:job_id>/checkpoints/",
        JobCheckpointViewSet.as_view({"get": "list"}),
        name="job-checkpoints",
    ),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("healthz", healthz),
    path("readyz", readyz),
    path("metrics", metrics, name="metrics"),
]
