"""Agents: configuration, conversations (messages) and long-term memories."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from jobs.models import Job


class AgentStatus(models.TextChoices):
    IDLE = "idle"
    BUSY = "busy"
    OFFLINE = "offline"
    ERROR = "error"


class OnToolRejection(models.TextChoices):
    REPORT = "report"  # tell the model the reviewer said no, and let it go on
    FAIL = "fail"  # end the job as rejected


# What a person configures about an agent: the admin's form and the API's body.
CONFIG_FIELDS = (
    "name",
    "description",
    "status",
    "provider",
    "model",
    "parameters",
    "instructions",
    "personality",
    "tools",
    "history_messages",
    "context_window_tokens",
    "max_turns",
    "max_concurrency",
    "on_tool_rejection",
)


class AgentQuerySet(models.QuerySet["Agent"]):
    def alive(self) -> "AgentQuerySet":
        return self.filter(deleted_at__isnull=True)


class Agent(models.Model):
    """An agent is configuration: who it is, which model it talks to, which tools it
    may use and how much it remembers. Running it is an `agent-task` job."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="agents"
    )
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="")
    status = models.CharField(max_length=8, choices=AgentStatus.choices, default=AgentStatus.IDLE)
    provider = models.CharField(max_length=32, default="offline")
    model = models.CharField(max_length=100, default="offline-echo")
    # temperature, max_tokens, top_p, presence_penalty, frequency_penalty, stop
    parameters = models.JSONField(default=dict, blank=True)
    instructions = models.TextField(blank=True, default="")
    # {"traits": [...], "tone": "...", "behaviour": "...", "language_style": "..."}
    personality = models.JSONField(default=dict, blank=True)
    tools = models.JSONField(default=list, blank=True)  # names from agents.tools
    history_messages = models.PositiveIntegerField(
        default=20, help_text="Recent messages of the session given to the model."
    )
    context_window_tokens = models.PositiveIntegerField(
        default=8000, help_text="Budget for the prompt: older history is dropped to fit."
    )
    max_turns = models.PositiveSmallIntegerField(default=8)
    max_concurrency = models.PositiveSmallIntegerField(
        default=0, help_text="Jobs of this agent running at once (0: no limit)."
    )
    on_tool_rejection = models.CharField(
        max_length=8, choices=OnToolRejection.choices, default=OnToolRejection.REPORT
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="agents",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects = AgentQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"],
                condition=Q(deleted_at__isnull=True),
                name="agent_name_unique_per_organization",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class MessageRole(models.TextChoices):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class Message(models.Model):
    """One turn of an agent's conversation in a session: the short-term memory."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="messages")
    session_id = models.CharField(max_length=100, db_index=True)
    job = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    content = models.TextField(blank=True, default="")
    tool_calls = models.JSONField(default=list, blank=True)
    tool_call_id = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["agent", "session_id", "pk"]
        indexes = [
            models.Index(fields=["agent", "session_id", "-id"], name="message_agent_session_idx")
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:40]}"


class Memory(models.Model):
    """A long-term memory of an agent, found again by similarity of its embedding."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="memories")
    content = models.TextField()
    embedding = models.JSONField(default=list)  # unit-length floats (see agents.memory)
    source_job = models.ForeignKey(
        Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "memories"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.content[:60]
