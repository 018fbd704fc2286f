"""Job admin: read-only history (steps, an events timeline) scoped to the member's
organization; cancel and retry go through the same services as the API. Apps above
the runtime add their own inlines (checkpoints/admin.py adds the job's checkpoints)."""

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django_celery_results.models import GroupResult, TaskResult

from accounts.permissions import request_user
from accounts.roles import visible_to
from jobs.models import Job, JobStep
from jobs.services import JobConflict, job_cancel, job_retry

TIMELINE_LIMIT = 500  # the newest events shown on a job's page; the API pages through all


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return True  # shown only on a job page, which the job admin has already allowed


class JobStepInline(ReadOnlyInline):
    model = JobStep
    fields = ("position", "key", "kind", "status", "attempt", "started_at", "duration", "error")
    readonly_fields = fields

    @admin.display(description="duration")
    def duration(self, step: JobStep) -> str:
        return seconds(step.duration_seconds)


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "job_type",
        "status",
        "concurrency_key",
        "wait_reason",
        "priority",
        "attempts",
        "duration",
        "tokens",
        "cost_display",
        "created_by",
        "created_at",
    )
    list_filter = ("status", "job_type", "priority")
    search_fields = ("id", "job_type", "idempotency_key", "request_id", "concurrency_key")
    date_hierarchy = "created_at"
    list_select_related = ("created_by",)
    readonly_fields = (*[f.name for f in Job._meta.fields], "timeline")
    inlines = [JobStepInline]
    actions = ["cancel_jobs", "retry_jobs"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Job]:
        return visible_to(super().get_queryset(request), request.user)

    @admin.display(description="duration", ordering="finished_at")
    def duration(self, job: Job) -> str:
        return seconds(job.duration_seconds)

    @admin.display(description="tokens in/out")
    def tokens(self, job: Job) -> str:
        return f"{job.tokens_in} / {job.tokens_out}" if job.tokens_in or job.tokens_out else "—"

    @admin.display(description="cost (USD)", ordering="cost")
    def cost_display(self, job: Job) -> str:
        if job.cost is None:  # unknown (a model without a price) is not the same as free
            return "unknown" if job.tokens_in or job.tokens_out else "—"
        return f"{job.cost.quantize(Decimal('0.0001'))}"

    @admin.display(description="events")
    def timeline(self, job: Job) -> SafeString:
        """The job's events in order, each with its time since the job was created."""
        events = list(job.events.order_by("-seq")[:TIMELINE_LIMIT])[::-1]
        if not events:
            return format_html("<p>No events.</p>")

        def since(moment: datetime) -> str:
            return f"+{(moment - job.created_at).total_seconds():.3f} s"

        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            (
                (
                    event.seq,
                    since(event.created_at),
                    event.kind,
                    json.dumps(event.data, sort_keys=True)[:300],
                )
                for event in events
            ),
        )
        older = (
            format_html("<p>Showing the newest {} events.</p>", TIMELINE_LIMIT)
            if len(events) == TIMELINE_LIMIT
            else ""
        )
        return format_html(
            '{}<table class="cs-timeline"><thead><tr><th>#</th><th>time</th>'
            "<th>event</th><th>data</th></tr></thead><tbody>{}</tbody></table>",
            older,
            rows,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # jobs go through retention, which keeps their decisions (the audit)

    @admin.action(description="Cancel selected jobs", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._apply(request, queryset, job_cancel, "cancelled")

    @admin.action(description="Retry selected jobs", permissions=["change"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._apply(request, queryset, job_retry, "re-queued")

    def _apply(
        self, request: HttpRequest, queryset: QuerySet[Job], action: Callable[..., Job], done: str
    ) -> None:
        count = 0
        for job in queryset:
            try:
                action(job=job, user=request_user(request))
                count += 1
            except JobConflict as exc:
                self.message_user(request, f"{job.pk}: {exc}", messages.WARNING)
        self.message_user(request, f"{count} job(s) {done}.")


# django-celery-results stores task results (beat's housekeeping); a job's outcome is on
# the job itself, so its admin pages would only confuse.
for _model in (TaskResult, GroupResult):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
