from typing import Any

from django import template

register = template.Library()


@register.simple_tag(takes_context=True)
def pending_checkpoints(context: dict[str, Any]) -> int:
    from checkpoints.admin import pending_count

    return pending_count(context["request"])
