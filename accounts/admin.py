"""Organizations (superusers), members (each organization's admins) and API tokens
(their owners, and organization admins for their members)."""

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from accounts.models import ApiToken, Membership, Organization, Role
from accounts.roles import visible_to
from accounts.services import (
    MembershipError,
    member_change_role,
    membership_remove,
    other_admins,
    token_revoke,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ("user",)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "allow_self_approval", "webhook_url", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]


class MembershipForm(ModelForm):
    class Meta:
        model = Membership
        fields = ["user", "organization", "role"]

    def clean_role(self) -> str:
        role: str = self.cleaned_data["role"]
        current = self.instance
        if (
            current.pk
            and current.role == Role.ADMIN
            and role != Role.ADMIN
            and not other_admins(current)
        ):
            raise ValidationError("An organization needs at least one admin.")
        return role


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """An organization's admins manage its members; the organization is always theirs."""

    form = MembershipForm

    list_display = ("user", "role", "organization", "created_at")
    list_filter = ("role",)
    search_fields = ("user__username", "user__email")
    autocomplete_fields = ("user",)
    list_select_related = ("user", "organization")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        return visible_to(super().get_queryset(request), request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # New members come through the API (a new user each): the admin's user picker
        # would list every organization's users.
        return bool(request.user.is_superuser)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return () if request.user.is_superuser else ("user", "organization", "created_at")

    def save_model(
        self, request: HttpRequest, obj: Membership, form: ModelForm, change: bool
    ) -> None:
        if change and "role" in form.changed_data:
            try:
                member_change_role(membership=obj, role=obj.role)
            except MembershipError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            if not request.user.is_superuser or form.changed_data == ["role"]:
                return
        super().save_model(request, obj, form, change)

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        try:
            membership_remove(membership=obj)
        except MembershipError as exc:
            self.message_user(request, str(exc), messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset:
            self.delete_model(request, membership)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are issued through the API (shown once); here they are listed and revoked."""

    list_display = ("name", "prefix", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "user__username")
    readonly_fields = ("user", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    exclude = ("digest",)
    actions = ["revoke_selected"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApiToken]:
        return visible_to(
            super().get_queryset(request), request.user, field="user__membership__organization"
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # revoke instead: the row records who had access and when

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset:
            token_revoke(token=token)
        self.message_user(request, f"{queryset.count()} token(s) revoked.")
