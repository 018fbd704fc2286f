"""/api/v1/tokens/ (your own API tokens) and /api/v1/members/ (your organization's
people; admins add them, change roles and remove them)."""

from django.core.exceptions import ValidationError as PasswordInvalid
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import services
from accounts.models import ApiToken, Membership
from accounts.permissions import HasCapability, request_organization, request_user
from accounts.roles import Capability, organization_of
from accounts.serializers import (
    ApiTokenCreateSerializer,
    ApiTokenSerializer,
    IssuedTokenSerializer,
    MemberCreateSerializer,
    MemberRoleSerializer,
    MemberSerializer,
)


class ApiTokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Every member manages their own tokens; a token is shown in the clear once."""

    serializer_class = ApiTokenSerializer
    permission_classes = [HasCapability]

    def get_queryset(self) -> QuerySet[ApiToken]:
        return ApiToken.objects.filter(user_id=self.request.user.pk)

    @extend_schema(request=ApiTokenCreateSerializer, responses={201: IssuedTokenSerializer})
    def create(self, request: Request) -> Response:
        body = ApiTokenCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        token, raw = services.token_issue(
            user=request_user(request), name=body.validated_data["name"]
        )
        data = {**ApiTokenSerializer(token).data, "token": raw}
        return Response(data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        """Revoke the token (the row stays, as a record of who had access and when)."""
        services.token_revoke(token=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class MemberViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = MemberSerializer
    permission_classes = [HasCapability]
    capabilities = {
        "create": Capability.ADMINISTER,
        "partial_update": Capability.ADMINISTER,
        "destroy": Capability.ADMINISTER,
    }
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Membership]:
        organization = organization_of(self.request.user)
        if organization is None:
            return Membership.objects.none()
        return (
            Membership.objects.filter(organization=organization)
            .select_related("user")
            .order_by("user__username")
        )

    @extend_schema(request=MemberCreateSerializer, responses={201: MemberSerializer})
    def create(self, request: Request) -> Response:
        body = MemberCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            membership = services.member_add(
                organization=request_organization(request), **body.validated_data
            )
        except PasswordInvalid as exc:
            raise ValidationError({"password": list(exc.messages)}) from exc
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=MemberRoleSerializer, responses=MemberSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        body = MemberRoleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        membership = services.member_change_role(
            membership=self.get_object(), role=body.validated_data["role"]
        )
        return Response(MemberSerializer(membership).data)

    @extend_schema(request=None, responses={204: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        """Remove the person from the organization and revoke their API tokens."""
        services.membership_remove(membership=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
