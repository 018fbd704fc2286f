"""Retention: finished jobs past an age deleted with everything that hangs on them, in
bounded batches (the beat task `jobs.prune` and `manage.py prune` call `retention_prune`).

A job goes only with its whole tree. The candidates are finished top-level jobs, and a
tree goes when every job in it finished before the cutoff, so nothing unfinished,
nothing younger and nothing an unfinished parent still needs is touched. Rows of other
apps that hang on a job (checkpoints, workflow runs, event waits) go by their foreign
keys' CASCADE, without the runtime knowing them; an app that keeps something beyond the
job (the checkpoint decisions, the audit trail) registers a `RetentionHook`.
"""

import itertools
import logging
import shutil
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol, cast

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, models, transaction
from django.db.models import ForeignObjectRel, Q
from django.db.models.deletion import CASCADE, Collector, get_candidate_relations_to_delete
from django.utils import timezone
from django_celery_results.models import GroupResult, TaskResult

from jobs.models import TERMINAL_STATUSES, Job
from jobs.runtime import job_workspace

logger = logging.getLogger(__name__)

WORKSPACES = "workspaces"  # the count of job folders, beside the models' labels

RootKey = tuple[datetime, uuid.UUID]  # (finished_at, id): the order roots are taken in


class BeforeDelete(Protocol):
    def __call__(self, *, job_ids: Sequence[uuid.UUID], dry_run: bool) -> int: ...


class Prune(Protocol):
    def __call__(self, *, limit: int | None, dry_run: bool) -> int: ...


@dataclass(frozen=True)
class RetentionHook:
    """Rows of an app that outlive the jobs they belong to."""

    label: str  # the model's label, the key of its counts
    # In the transaction deleting these jobs, before it: keep the rows (or, dry, count
    # them). Returns how many are kept.
    before_delete: BeforeDelete
    # Delete (dry: count) at most `limit` (None: no bound) of the kept rows past their
    # own age. Returns how many.
    prune: Prune


HOOKS: list[RetentionHook] = []


def register_retention_hook(hook: RetentionHook) -> None:
    if all(known.label != hook.label for known in HOOKS):
        HOOKS.append(hook)


@dataclass
class PruneReport:
    dry_run: bool
    cutoff: datetime | None  # jobs that finished before it go; None: jobs are kept
    deleted: Counter[str] = field(default_factory=Counter)  # by model label, and WORKSPACES
    kept: Counter[str] = field(default_factory=Counter)  # rows hooks keep beyond their job
    batches: int = 0  # batches of jobs


def retention_prune(
    *,
    older_than: timedelta | None,
    batch_size: int,
    max_batches: int | None = None,
    dry_run: bool = False,
) -> PruneReport:
    """One retention pass: the rows hooks kept, past their own age; job trees that
    finished more than `older_than` ago (None: no job goes); Celery task results past
    CELERY_RESULT_EXPIRES. Each kind in batches of `batch_size` (jobs: whole trees
    adding up to it, or one larger tree), each its own transaction, up to `max_batches`
    of each (None: until nothing is left). A dry run deletes nothing and counts the
    same."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    report = PruneReport(
        dry_run=dry_run, cutoff=timezone.now() - older_than if older_than else None
    )
    report.deleted.update(dict.fromkeys(_cascaded_labels(), 0))
    report.deleted[WORKSPACES] = 0
    report.kept.update(dict.fromkeys((hook.label for hook in HOOKS), 0))
    # What hooks kept on earlier passes goes first, so that rows this pass keeps wait for
    # the next one even when already past their age: a dry run then counts what the real
    # run deletes.
    for hook in HOOKS:
        report.deleted[hook.label] += _prune_rows(
            hook.prune, batch_size=batch_size, max_batches=max_batches, dry_run=dry_run
        )
    if report.cutoff is not None:
        _prune_jobs(report, report.cutoff, batch_size=batch_size, max_batches=max_batches)
    for model in (TaskResult, GroupResult):
        report.deleted[model._meta.label] += _prune_rows(
            _expired_results(model), batch_size=batch_size, max_batches=max_batches, dry_run=dry_run
        )
    if not dry_run and any(report.deleted.values()):
        logger.info(
            "retention deleted %s; kept %s",
            _nonzero(report.deleted),
            _nonzero(report.kept),
            extra={"batches": report.batches},
        )
    return report


# --- jobs ---------------------------------------------------------------------------------


def _prune_jobs(
    report: PruneReport, cutoff: datetime, *, batch_size: int, max_batches: int | None
) -> None:
    after: RootKey | None = None
    for _ in _batches(max_batches):
        trees, after = _next_trees(cutoff=cutoff, after=after, limit=batch_size)
        if not trees:
            return
        if report.dry_run:
            deleted, kept = _delete(list(itertools.chain(*trees.values())), dry_run=True)
        else:
            with transaction.atomic():
                ids = list(itertools.chain(*_locked(trees, cutoff).values()))
                deleted, kept = _delete(ids, dry_run=False) if ids else (Counter(), Counter())
        report.deleted.update(deleted)
        report.kept.update(kept)
        report.batches += 1


def _finished_before(status: str, finished_at: datetime | None, cutoff: datetime) -> bool:
    return status in TERMINAL_STATUSES and finished_at is not None and finished_at < cutoff


def _roots(*, cutoff: datetime, after: RootKey | None, limit: int) -> list[RootKey]:
    """Finished top-level jobs older than the cutoff, oldest first, after `after`."""
    roots = Job.objects.filter(
        parent__isnull=True,
        finished_at__isnull=False,
        finished_at__lt=cutoff,
        status__in=TERMINAL_STATUSES,
    )
    if after is not None:
        roots = roots.filter(Q(finished_at__gt=after[0]) | Q(finished_at=after[0], pk__gt=after[1]))
    keys = roots.order_by("finished_at", "pk").values_list("finished_at", "pk")[:limit]
    return cast(list[RootKey], list(keys))  # finished_at is not null here


def _whole_trees(roots: Iterable[uuid.UUID], cutoff: datetime) -> dict[uuid.UUID, list[uuid.UUID]]:
    """The trees of `roots` in which every job finished before the cutoff: root → its
    jobs. Read level by level (jobs nest at most COUNTERSIGN_MAX_JOB_DEPTH deep)."""
    trees = {root: [root] for root in roots}
    root_of = {root: root for root in trees}
    frontier = list(trees)
    while frontier:
        level = Job.objects.filter(parent_id__in=frontier).values_list(
            "pk", "parent_id", "status", "finished_at"
        )
        frontier = []
        for pk, parent_id, status, finished_at in level:
            root = root_of[parent_id]
            if root not in trees:
                continue  # already ruled out
            if not _finished_before(status, finished_at, cutoff):
                del trees[root]
                continue
            root_of[pk] = root
            trees[root].append(pk)
            frontier.append(pk)
    return trees


def _next_trees(
    *, cutoff: datetime, after: RootKey | None, limit: int
) -> tuple[dict[uuid.UUID, list[uuid.UUID]], RootKey | None]:
    """The oldest whole trees after `after` holding `limit` jobs at most (or one larger
    tree), and where the next batch starts. Roots whose trees must stay are passed by,
    so they never block the ones behind them."""
    trees: dict[uuid.UUID, list[uuid.UUID]] = {}
    size = 0
    while size < limit:
        page = _roots(cutoff=cutoff, after=after, limit=limit)
        if not page:
            break
        whole = _whole_trees((pk for _, pk in page), cutoff)
        for key in page:
            jobs = whole.get(key[1])
            if jobs is not None:
                if size and size + len(jobs) > limit:
                    return trees, after  # this tree starts the next batch
                trees[key[1]] = jobs
                size += len(jobs)
            after = key
    return trees, after


def _locked(
    trees: dict[uuid.UUID, list[uuid.UUID]], cutoff: datetime
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """The trees whose jobs this transaction could lock and that still all finished
    before the cutoff (read again under the lock: a retry may have started one since).
    A job another transaction holds is not waited for (no deadlock with a run ending or
    a retry); its tree is left for a later pass."""
    ids = list(itertools.chain(*trees.values()))
    fresh = {
        pk: (status, finished_at)
        for pk, status, finished_at in Job.objects.select_for_update(skip_locked=True)
        .filter(pk__in=ids)
        .values_list("pk", "status", "finished_at")
    }
    return {
        root: jobs
        for root, jobs in trees.items()
        if all(pk in fresh and _finished_before(*fresh[pk], cutoff) for pk in jobs)
    }


def _delete(ids: list[uuid.UUID], *, dry_run: bool) -> tuple[Counter[str], Counter[str]]:
    """Delete (dry: count) the jobs `ids` and everything that cascades from them, after
    the hooks kept their rows; remove their workspaces once the deletion commits."""
    kept = Counter({hook.label: hook.before_delete(job_ids=ids, dry_run=dry_run) for hook in HOOKS})
    collector = Collector(using=DEFAULT_DB_ALIAS)
    collector.collect(Job.objects.filter(pk__in=ids).only("pk"))
    deleted = _planned(collector) if dry_run else Counter(collector.delete()[1])
    folders = [path for path in (job_workspace(str(pk)) for pk in ids) if path.is_dir()]
    deleted[WORKSPACES] += len(folders)
    if not dry_run:
        transaction.on_commit(lambda: _remove(folders))
    return deleted, kept


def _planned(collector: Collector) -> Counter[str]:
    """What `collector.delete()` would report, without deleting."""
    counts: Counter[str] = Counter()
    for qs in collector.fast_deletes:
        counts[qs.model._meta.label] += qs.count()
    for model, instances in collector.data.items():
        counts[model._meta.label] += len(instances)
    return counts


def _remove(folders: list[Path]) -> None:
    for folder in folders:
        try:
            shutil.rmtree(folder)
        except OSError as exc:  # the rows are gone; a folder left behind only takes space
            logger.warning("could not remove workspace %s: %s", folder, exc)


def _cascaded_labels() -> list[str]:
    """The models whose rows go when a job goes (CASCADE, transitively), so that every
    report names each of them, even at 0."""
    found: list[type[models.Model]] = [Job]
    for model in found:  # grows while walked
        # reverse relations, related_name="+" ones too (mistyped in django-stubs)
        relations = cast(Iterable[ForeignObjectRel], get_candidate_relations_to_delete(model._meta))
        for relation in relations:
            related = relation.related_model
            if relation.on_delete is CASCADE and isinstance(related, type) and related not in found:
                found.append(related)
    return [model._meta.label for model in found]


# --- rows with an age of their own ------------------------------------------------------


def _prune_rows(prune: Prune, *, batch_size: int, max_batches: int | None, dry_run: bool) -> int:
    if dry_run:
        return prune(limit=batch_size * max_batches if max_batches else None, dry_run=True)
    total = 0
    for _ in _batches(max_batches):
        with transaction.atomic():
            deleted = prune(limit=batch_size, dry_run=False)
        total += deleted
        if deleted < batch_size:
            break
    return total


def _expired_results(model: type[TaskResult] | type[GroupResult]) -> Prune:
    """Celery's results past CELERY_RESULT_EXPIRES, in batches (Celery's own daily
    `celery.backend_cleanup` deletes them in one statement)."""

    def prune(*, limit: int | None, dry_run: bool) -> int:
        if not settings.CELERY_RESULT_EXPIRES:
            return 0
        expired = model.objects.get_all_expired(settings.CELERY_RESULT_EXPIRES).order_by("pk")
        if dry_run:
            return (expired[:limit] if limit else expired).count()
        batch = list(expired.values_list("pk", flat=True)[:limit])
        return model.objects.filter(pk__in=batch).delete()[0]

    return prune


def _batches(max_batches: int | None) -> Iterable[int]:
    return range(max_batches) if max_batches else itertools.count()


def _nonzero(counts: Counter[str]) -> dict[str, int]:
    return {label: n for label, n in counts.items() if n}
