from typing import Any

from django import template

from checkpoints.selectors import pending_count

register = template.Library()


@register.simple_tag(takes_context=True)
def pending_checkpoints(context: dict[str, Any]) -> int:
    return pending_count(context["request"].user)
