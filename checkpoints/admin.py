"""Checkpoint review in the Django admin. Decisions call the same services as
the API and the command line; visibility follows the caller's organization."""

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from accounts.roles import visible_to
from checkpoints import services
from checkpoints.models import Checkpoint, CheckpointDecision, CheckpointStatus
from checkpoints.review import presentation
from jobs.admin import JobAdmin, ReadOnlyInline
from jobs.models import Job


class DecisionInline(admin.TabularInline):
    model = CheckpointDecision
    extra = 0
    can_delete = False
    fields = ("created_at", "user", "verdict", "reason", "payload")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class JobTypeFilter(admin.SimpleListFilter):
    """The job types of the checkpoints the user may see, not of every organization's."""

    title = "job type"
    parameter_name = "job__job_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        types = (
            visible_to(Checkpoint.objects.all(), request.user)
            .order_by("job__job_type")
            .values_list("job__job_type", flat=True)
            .distinct()
        )
        return [(t, t) for t in types]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(job__job_type=self.value()) if self.value() else queryset


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "kind", "status", "job_type", "opened_at", "decided_at")
    list_filter = ("status", "kind", JobTypeFilter, "opened_at")
    search_fields = ("title", "key", "description", "job__id")
    readonly_fields = [f.name for f in Checkpoint._meta.fields]
    inlines = [DecisionInline]
    actions = ["approve_selected", "reject_selected"]
    list_select_related = ("job",)

    @admin.display(description="job type", ordering="job__job_type")
    def job_type(self, obj: Checkpoint) -> str:
        return obj.job.job_type

    def get_queryset(self, request: HttpRequest) -> QuerySet[Checkpoint]:
        # Pending first, oldest first: what waits for a person leads the list.
        return visible_to(Checkpoint.objects.pending_first(), request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        decide = path(
            "<int:checkpoint_id>/decide/",
            self.admin_site.admin_view(self.decide_view),
            name="checkpoints_checkpoint_decide",
        )
        return [decide, *super().get_urls()]

    # --- the review page --------------------------------------------------------
    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        checkpoint = get_object_or_404(
            self.get_queryset(request).select_related(
                "job", "job__created_by", "job__organization"
            ),
            pk=object_id,
        )
        approve_refusal = services.decide_refusal(checkpoint, request.user, approving=True)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Review: {checkpoint.title}",
            "opts": self.model._meta,
            "original": checkpoint,
            "checkpoint": checkpoint,
            "job_input": json.dumps(checkpoint.job.input, indent=2, sort_keys=True),
            "steps": checkpoint.job.steps.order_by("position"),
            "view": presentation(checkpoint.payload),
            "payload_json": json.dumps(checkpoint.payload, indent=2),
            "decisions": checkpoint.decisions.select_related("user"),
            "approve_refusal": approve_refusal,
            "may_approve": not approve_refusal,
            "may_reject": not services.decide_refusal(checkpoint, request.user, approving=False),
            "has_view_permission": True,
            "has_change_permission": False,
            "has_add_permission": False,
            "has_delete_permission": False,
            "has_editable_inline_admin_formsets": False,
            "add": False,
            "change": False,
            "save_as": False,
            "show_save": False,
            "is_popup": False,
        }
        return TemplateResponse(request, "admin/checkpoints/checkpoint/review.html", context)

    def decide_view(self, request: HttpRequest, checkpoint_id: int) -> HttpResponse:
        checkpoint = get_object_or_404(self.get_queryset(request), pk=checkpoint_id)
        back = reverse("admin:checkpoints_checkpoint_change", args=[checkpoint.pk])
        if request.method != "POST":
            return HttpResponseRedirect(back)
        verdict, reason = request.POST.get("verdict", ""), request.POST.get("reason", "")
        try:
            if verdict == "approve":
                services.checkpoint_approve(checkpoint=checkpoint, user=request.user, reason=reason)
            elif verdict == "approve_with_edits":
                services.checkpoint_approve(
                    checkpoint=checkpoint,
                    user=request.user,
                    reason=reason,
                    payload=_json_field(request, "payload"),
                )
            elif verdict == "submit":
                services.checkpoint_submit_input(
                    checkpoint=checkpoint,
                    user=request.user,
                    data=_json_field(request, "data"),
                    reason=reason,
                )
            elif verdict == "reject":
                services.checkpoint_reject(checkpoint=checkpoint, user=request.user, reason=reason)
            else:
                raise services.CheckpointValidationError(f"unknown verdict {verdict!r}")
        except services.CheckpointValidationError as exc:
            details = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.fields.items())
            messages.error(request, f"{exc}{' — ' + details if details else ''}")
        except (services.CheckpointError, PermissionDenied) as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request, f"Checkpoint {checkpoint.pk}: {verdict.replace('_', ' ')} recorded."
            )
        return HttpResponseRedirect(back)

    # --- bulk decisions, with a confirmation page ------------------------------------
    @admin.action(description="Approve selected checkpoints")
    def approve_selected(
        self, request: HttpRequest, queryset: QuerySet[Checkpoint]
    ) -> HttpResponse | None:
        return self._bulk(request, queryset, "approve")

    @admin.action(description="Reject selected checkpoints")
    def reject_selected(
        self, request: HttpRequest, queryset: QuerySet[Checkpoint]
    ) -> HttpResponse | None:
        return self._bulk(request, queryset, "reject")

    def _bulk(
        self, request: HttpRequest, queryset: QuerySet[Checkpoint], verdict: str
    ) -> HttpResponse | None:
        pending = list(queryset.filter(status=CheckpointStatus.PENDING).select_related("job"))
        if "confirm" not in request.POST:
            return TemplateResponse(
                request,
                "admin/checkpoints/checkpoint/bulk_confirm.html",
                {
                    **self.admin_site.each_context(request),
                    "title": f"Confirm: {verdict}",
                    "opts": self.model._meta,
                    "checkpoints": pending,
                    "verdict": verdict,
                    "action": request.POST.get("action"),
                    "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                },
            )
        reason = request.POST.get("reason", "")
        done, failed = 0, []
        for checkpoint in pending:
            try:
                if verdict == "approve":
                    services.checkpoint_approve(
                        checkpoint=checkpoint, user=request.user, reason=reason
                    )
                else:
                    services.checkpoint_reject(
                        checkpoint=checkpoint, user=request.user, reason=reason
                    )
                done += 1
            except (services.CheckpointError, PermissionDenied) as exc:
                failed.append(f"{checkpoint.pk}: {exc}")
        if done:
            messages.success(request, f"{done} checkpoint(s): {verdict} recorded.")
        for failure in failed:
            messages.error(request, failure)
        return None


def _json_field(request: HttpRequest, name: str) -> Any:
    try:
        return json.loads(request.POST.get(name, ""))
    except json.JSONDecodeError as exc:
        raise services.CheckpointValidationError(
            f"{name} is not valid JSON", {name: [str(exc)]}
        ) from exc


class CheckpointInline(ReadOnlyInline):
    model = Checkpoint
    fields = ("review", "kind", "status", "opened_at", "decided_at")
    readonly_fields = fields

    @admin.display(description="checkpoint")
    def review(self, checkpoint: Checkpoint) -> SafeString:
        url = reverse("admin:checkpoints_checkpoint_change", args=[checkpoint.pk])
        return format_html('<a href="{}">{}</a>', url, checkpoint.title)


# A job's page lists its checkpoints: the runtime's admin knows nothing of them, so
# this app registers the job admin again with its inline added.
admin.site.unregister(Job)


@admin.register(Job)
class JobWithCheckpointsAdmin(JobAdmin):
    inlines = [*JobAdmin.inlines, CheckpointInline]


admin.site.index_template = "admin/countersign_index.html"
