"""Workflows in the admin: edit a definition (saved as a new version, checked with the
same rules as the API), see its versions and triggers; runs with the state of each node;
events. Scoped to the member's organization."""

import json
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from accounts.models import Organization
from accounts.permissions import request_user
from accounts.roles import organization_of, visible_to
from accounts.services import default_organization
from jobs.runtime import JobConflict
from jobs.services import job_cancel, job_retry
from workflows import services
from workflows.models import Event, TriggerRule, Workflow, WorkflowRun, WorkflowVersion
from workflows.selectors import run_nodes


class WorkflowForm(forms.ModelForm):
    definition = forms.JSONField(help_text="Saved as a new version when it changes.")
    organization: Organization | None = None  # a new workflow's: the editor's (get_form)

    class Meta:
        model = Workflow
        fields = ["slug", "name", "description", "active"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.current_version is not None:
            self.fields["definition"].initial = self.instance.current_version.definition

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        organization = self.instance.organization if self.instance.pk else self.organization
        if "definition" in data and organization is not None:
            errors = services.definition_errors(
                organization=organization,
                definition=data["definition"],
                slug=data.get("slug") or self.instance.slug,
            )
            for path, problems in errors.items():
                self.add_error("definition", [f"{path}: {p}" for p in problems])
        taken = Workflow.objects.filter(organization=organization, slug=data.get("slug"))
        if not self.instance.pk and organization is not None and taken.exists():
            self.add_error("slug", "A workflow with this slug exists in the organization.")
        return data


class VersionInline(admin.TabularInline):
    model = WorkflowVersion
    extra = 0
    can_delete = False
    fields = ("number", "checksum", "created_by", "created_at")
    readonly_fields = fields
    ordering = ["-number"]

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class TriggerInline(admin.TabularInline):
    model = TriggerRule
    extra = 0
    can_delete = False
    fields = ("kind", "event_name", "filter", "cron", "timezone", "next_fire_at", "last_fired_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    form = WorkflowForm
    list_display = ("slug", "name", "active", "version", "organization", "updated_at")
    list_filter = ("active",)
    search_fields = ("slug", "name", "description")
    inlines = [TriggerInline, VersionInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workflow]:
        return visible_to(super().get_queryset(request), request.user).select_related(
            "current_version"
        )

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = cast(type[WorkflowForm], super().get_form(request, obj, change=change, **kwargs))
        form.organization = organization_of(request.user) or default_organization()
        return form

    @admin.display(description="version")
    def version(self, workflow: Workflow) -> str:
        version = workflow.current_version
        return f"v{version.number}" if version else "—"

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Other workflows' nodes and agents' tools name a workflow by its slug.
        return ("slug",) if obj is not None else ()

    def save_model(
        self, request: HttpRequest, obj: Workflow, form: forms.ModelForm, change: bool
    ) -> None:
        definition = form.cleaned_data["definition"]
        user = request_user(request)
        if change:
            services.workflow_update(
                workflow=obj, name=obj.name, description=obj.description, active=obj.active
            )
            services.workflow_save(workflow=obj, definition=definition, created_by=user)
        else:
            assert isinstance(form, WorkflowForm) and form.organization is not None
            created = services.workflow_create(
                organization=form.organization,
                slug=obj.slug,
                name=obj.name,
                description=obj.description,
                definition=definition,
                created_by=user,
            )
            obj.pk = created.pk

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass  # versions and triggers are written by the services, never by the inlines

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # runs keep their versions: make a workflow inactive instead


@admin.register(WorkflowRun)
class WorkflowRunAdmin(admin.ModelAdmin):
    list_display = ("job_id", "workflow", "version_number", "status", "trigger", "created_at")
    list_filter = ("trigger", "job__status")
    search_fields = ("job__id", "workflow__slug", "session_id")
    list_select_related = ("workflow", "version", "job")
    readonly_fields = (
        "job_link",
        "workflow",
        "version_number",
        "status",
        "trigger",
        "event",
        "session_id",
        "created_at",
        "result",
        "nodes",
    )
    fields = readonly_fields
    actions = ["cancel_runs", "retry_runs"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkflowRun]:
        return visible_to(super().get_queryset(request), request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="version")
    def version_number(self, run: WorkflowRun) -> str:
        return f"v{run.version.number}"

    @admin.display(description="status", ordering="job__status")
    def status(self, run: WorkflowRun) -> str:
        return run.job.status

    @admin.display(description="job")
    def job_link(self, run: WorkflowRun) -> SafeString:
        url = reverse("admin:jobs_job_change", args=[run.job_id])
        return format_html('<a href="{}">{}</a>', url, run.job_id)

    @admin.display(description="result")
    def result(self, run: WorkflowRun) -> SafeString:
        return format_html("<pre>{}</pre>", json.dumps(run.job.result, indent=2)[:5000])

    @admin.display(description="nodes")
    def nodes(self, run: WorkflowRun) -> SafeString:
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            (
                (
                    n["id"],
                    n["type"],
                    n["status"],
                    n["attempts"],
                    json.dumps(n["output"] if n["error"] is None else n["error"])[:300],
                )
                for n in _flat(run_nodes(run))
            ),
        )
        return format_html(
            '<table class="cs-nodes"><thead><tr><th>node</th><th>type</th>'
            "<th>status</th><th>attempts</th><th>output / error</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )

    @admin.action(description="Cancel selected runs", permissions=["change"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[WorkflowRun]) -> None:
        self._apply(request, queryset, job_cancel, "cancelled")

    @admin.action(description="Retry selected runs", permissions=["change"])
    def retry_runs(self, request: HttpRequest, queryset: QuerySet[WorkflowRun]) -> None:
        self._apply(request, queryset, job_retry, "re-queued")

    def _apply(
        self, request: HttpRequest, queryset: QuerySet[WorkflowRun], action: Any, done: str
    ) -> None:
        count = 0
        for run in queryset.select_related("job"):
            try:
                action(job=run.job, user=request_user(request))
                count += 1
            except JobConflict as exc:
                self.message_user(request, f"{run.job_id}: {exc}", messages.WARNING)
        self.message_user(request, f"{count} run(s) {done}.")


def _flat(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nodes in the order they appear, containers' nodes after their container."""
    flat = []
    for node in nodes:
        flat.append(node)
        for case in node.get("cases", []):
            flat += _flat(case)
        flat += _flat(node.get("default", []))
        for branch in node.get("branches", []):
            flat += _flat(branch["nodes"])
        for iteration in node.get("iterations", []):
            flat += _flat(iteration if isinstance(iteration, list) else iteration["nodes"])
    return flat


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ("name", "source", "received_at", "organization")
    search_fields = ("name", "source", "idempotency_key")
    readonly_fields = (
        "name",
        "data",
        "idempotency_key",
        "source",
        "created_by",
        "depth",
        "received_at",
        "organization",
    )
    fields = readonly_fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Event]:
        return visible_to(super().get_queryset(request), request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # a run's waits say which events it took
