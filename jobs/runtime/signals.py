"""Signals apps above the runtime listen to; the runtime does not know who listens.

- `job_finished(job_id, status, parent_id, job_type)`: a job reached a terminal status
  (a cancel of a job that was not running included); an app that cares for some job
  types only returns early on the others, without a query. Checkpoints close their pending
  rows; a waiting parent is woken.
- `run_started(job)`: a run was admitted and its handler is about to start. Sent
  inside the transaction that took the job's concurrency slot, if it has a key.
- `job_retried(job)`: a failed or cancelled job was put back to `queued` (`job_retry`),
  inside its transaction: an app may reset what its handler must do again.
- `run_ended(job, outcome, running_others)`: a run that had started (or ended before
  its handler) is over: finished, waiting, retrying or failed. `running_others` is
  how many other runs of the job's concurrency key go on; sent under that key's lock,
  so the count is exact. Not sent for a parked run, nor one that lost its lease.
"""

from django.dispatch import Signal

job_finished = Signal()
run_started = Signal()
run_ended = Signal()
job_retried = Signal()
