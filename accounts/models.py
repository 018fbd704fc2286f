"""Organizations, who belongs to them in which role, and API tokens."""

from django.conf import settings
from django.db import models


class Organization(models.Model):
    """A tenant: its agents, jobs and checkpoints are visible to its members only."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    # The four-eyes rule per organization (COUNTERSIGN_ALLOW_SELF_APPROVAL allows it everywhere).
    allow_self_approval = models.BooleanField(default=False)
    # Told when a checkpoint opens: a JSON POST signed with HMAC-SHA256 of the body.
    webhook_url = models.URLField(blank=True, default="")
    webhook_secret = models.CharField(
        max_length=100,
        blank=True,
        default="",
        help_text="Signs webhook bodies; generated when empty.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: object, **kwargs: object) -> None:
        if self.webhook_url and not self.webhook_secret:
            import secrets

            self.webhook_secret = secrets.token_urlsafe(32)
        super().save(*args, **kwargs)  # type: ignore[arg-type]


class Role(models.TextChoices):
    VIEWER = "viewer"  # reads
    OPERATOR = "operator"  # creates, cancels and retries jobs; runs agents
    APPROVER = "approver"  # decides checkpoints
    ADMIN = "admin"  # all of the above, and manages agents, workflows, members, workers


class Membership(models.Model):
    """One organization per user: every request is scoped to it."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "user"]

    def __str__(self) -> str:
        return f"{self.user} ({self.role} in {self.organization})"


class ApiToken(models.Model):
    """A per-user API token. Only a SHA-256 digest is stored; the token is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    # The first characters of the token, to tell tokens apart in lists (not secret).
    prefix = models.CharField(max_length=16, db_index=True)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
