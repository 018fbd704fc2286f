from typing import Any

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Organizations and access"

    def ready(self) -> None:
        from django.contrib.auth.models import User
        from django.db.models.signals import post_delete, post_save

        from accounts import schema  # noqa: F401  (registers the OpenAPI extension)
        from accounts.models import ApiToken, Membership, Organization

        # A token's look-up is reused for a few seconds (token_authenticate): a change to
        # what it found, by a service, the admin or a shell, is read again at once in this
        # process (in others, within COUNTERSIGN_TOKEN_CACHE_SECONDS).
        for model in (ApiToken, Membership, Organization, User):
            for signal in (post_save, post_delete):
                signal.connect(_forget_tokens, sender=model, dispatch_uid="forget-tokens")


def _forget_tokens(**kwargs: Any) -> None:
    from accounts.services import forget_tokens

    forget_tokens()
