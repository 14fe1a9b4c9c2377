"""The ledger: states only move forward, whoever moves them and in whatever order."""

import pytest

from worker.deps import Deps
from worker.status import Status


@pytest.mark.parametrize(
    ("reached", "late"),
    [
        (Status.COMPLETED, Status.PROCESSING),
        (Status.COMPLETED, Status.QUEUED),
        (Status.PROCESSING, Status.QUEUED),
        (Status.LANDED, Status.COMPLETED),
        (Status.FAILED, Status.LANDED),
    ],
)
async def test_a_late_state_never_moves_a_job_back(
    deps: Deps, reached: Status, late: Status
) -> None:
    """Once a job has reached a state, an earlier one (or a rival end) changes nothing."""
    record, _ = await deps.ledger.create(prompt="a", model="grok-imagine-image")
    assert await deps.ledger.transition(record.ref, reached, "test")
    assert not await deps.ledger.transition(record.ref, late, "test", progress=99)
    after = await deps.ledger.get(record.ref)
    assert after is not None
    assert after.status == reached
    moves = [
        e.detail for e in await deps.ledger.history.job(record.ref) if e.event == "status.changed"
    ]
    assert moves == [{"from": "SUBMITTING", "to": reached}]


async def test_progress_only_rises_within_a_state(deps: Deps) -> None:
    """A lower or equal progress report in the same state is ignored."""
    record, _ = await deps.ledger.create(prompt="a", model="grok-imagine-image")
    assert await deps.ledger.transition(record.ref, Status.PROCESSING, "test", progress=40)
    assert not await deps.ledger.transition(record.ref, Status.PROCESSING, "test", progress=30)
    assert await deps.ledger.transition(record.ref, Status.PROCESSING, "test", progress=60)
    after = await deps.ledger.get(record.ref)
    assert after is not None
    assert after.progress == 60


async def test_a_job_id_owned_by_one_submission_is_never_attached_to_another(deps: Deps) -> None:
    """Attaching a job id that another ref already holds changes neither record."""
    first, _ = await deps.ledger.create(prompt="a", model="grok-imagine-image")
    second, _ = await deps.ledger.create(prompt="b", model="grok-imagine-image")
    job_id = "0b1c9a52-5d0e-4c39-9a8f-000000000001"
    assert (await deps.ledger.attach(first.ref, job_id)).job_id == job_id
    refused = await deps.ledger.attach(second.ref, job_id)
    assert (refused.job_id, refused.owner) == ("", first.ref)
    assert await deps.ledger.ref_for(job_id) == first.ref
    after = await deps.ledger.get(second.ref)
    assert after is not None
    assert after.job_id is None
