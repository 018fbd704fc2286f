"""Read-mostly admin for jobs; cancel and retry go through the services.

The full review experience (diffs, timelines, bulk decisions) comes with the
admin issue; this keeps jobs inspectable from day one.
"""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from agents.models import Job, JobEvent, JobStep
from agents.services import JobConflict, job_cancel, job_retry


class JobStepInline(admin.TabularInline):
    model = JobStep
    extra = 0
    can_delete = False
    fields = ("position", "key", "kind", "status", "attempt", "started_at", "finished_at", "error")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class JobEventInline(admin.TabularInline):
    model = JobEvent
    extra = 0
    can_delete = False
    fields = ("seq", "kind", "data", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "job_type", "status", "wait_reason", "priority", "attempts",
                    "created_by", "created_at", "finished_at")
    list_filter = ("status", "job_type", "priority")
    search_fields = ("id", "job_type", "idempotency_key")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in Job._meta.fields]
    inlines = [JobStepInline, JobEventInline]
    actions = ["cancel_jobs", "retry_jobs"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # deleting a job would cascade to its checkpoint decisions (the audit)

    @admin.action(description="Cancel selected jobs", permissions=["change"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._apply(request, queryset, job_cancel, "cancelled")

    @admin.action(description="Retry selected jobs", permissions=["change"])
    def retry_jobs(self, request: HttpRequest, queryset: QuerySet[Job]) -> None:
        self._apply(request, queryset, job_retry, "re-queued")

    def _apply(self, request: HttpRequest, queryset: QuerySet[Job], action: object,
               done: str) -> None:
        count = 0
        for job in queryset:
            try:
                action(job=job, user=request.user)  # type: ignore[operator]
                count += 1
            except JobConflict as exc:
                self.message_user(request, f"{job.pk}: {exc}", messages.WARNING)
        self.message_user(request, f"{count} job(s) {done}.")
