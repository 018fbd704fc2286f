"""Agent admin: configuration validated by the same rules as the API, soft deletion,
statistics; conversations and memories read-only. Scoped to the member's organization."""

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from accounts.permissions import request_user
from accounts.roles import organization_of, visible_to
from accounts.services import default_organization
from agents.models import CONFIG_FIELDS, Agent, Memory, Message
from agents.selectors import agent_statistics
from agents.services import agent_delete, config_errors


class AgentForm(forms.ModelForm):
    class Meta:
        model = Agent
        fields = CONFIG_FIELDS

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        organization = self.instance.organization_id if self.instance.pk else None
        for field, errors in config_errors(data, organization).items():
            self.add_error(field if field in self.fields else None, errors)
        return data


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentForm
    list_display = (
        "name",
        "status",
        "provider",
        "model",
        "tool_list",
        "organization",
        "updated_at",
    )
    list_filter = ("status", "provider")
    search_fields = ("name", "description")
    readonly_fields = ("statistics",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Agent]:
        return visible_to(super().get_queryset(request), request.user).filter(
            deleted_at__isnull=True
        )

    def save_model(
        self, request: HttpRequest, obj: Agent, form: forms.ModelForm, change: bool
    ) -> None:
        if not change:
            obj.organization = organization_of(request.user) or default_organization()
            obj.created_by = request_user(request)
        super().save_model(request, obj, form, change)

    def delete_model(self, request: HttpRequest, obj: Agent) -> None:
        agent_delete(agent=obj)  # soft: its jobs and conversations stay

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        for agent in queryset:
            agent_delete(agent=agent)

    @admin.display(description="tools")
    def tool_list(self, agent: Agent) -> str:
        return ", ".join(agent.tools) or "—"

    @admin.display(description="statistics")
    def statistics(self, agent: Agent) -> SafeString:
        if agent.pk is None:
            return format_html("—")
        stats = agent_statistics(agent)
        return format_html_join(
            "",
            "<div><b>{}</b>: {}</div>",
            ((k.replace("_", " "), "—" if v is None else v) for k, v in stats.items()),
        )


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("agent", "session_id", "role", "short", "job", "created_at")
    list_filter = ("role",)
    search_fields = ("session_id", "content")
    readonly_fields = [f.name for f in Message._meta.fields]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return visible_to(
            super().get_queryset(request), request.user, field="agent__organization"
        ).select_related("agent")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="content")
    def short(self, message: Message) -> str:
        return message.content[:80]


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    list_display = ("agent", "content", "created_at")
    search_fields = ("content",)
    exclude = ("embedding",)
    readonly_fields = ("agent", "content", "source_job", "created_at")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Memory]:
        return visible_to(
            super().get_queryset(request), request.user, field="agent__organization"
        ).select_related("agent")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
