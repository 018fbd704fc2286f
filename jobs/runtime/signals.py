"""Signals other apps listen to; the runtime does not know who listens."""

from django.dispatch import Signal

# Sent with job_id and status when a job reaches a terminal status (including
# a cancel of a job that was not running). Checkpoints close their pending rows.
job_finished = Signal()
