from django.contrib import admin
from django.http import HttpRequest

from checkpoints.models import Checkpoint, CheckpointDecision


class DecisionInline(admin.TabularInline):
    model = CheckpointDecision
    extra = 0
    can_delete = False
    fields = ("created_at", "user", "verdict", "reason", "payload")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "kind", "status", "job", "opened_at", "decided_at")
    list_filter = ("status", "kind", "job__job_type")
    search_fields = ("title", "key", "job__id")
    readonly_fields = [f.name for f in Checkpoint._meta.fields]
    inlines = [DecisionInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
