"""What the demo shows: a live bar and table while the jobs run, then every job's ending."""

from rich import box
from rich.console import Group, RenderableType
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from simulator.demo_jobs import Tracked
from worker.status import Status

COLOURS = {Status.LANDED: "green", Status.FAILED: "red", Status.CANCELLED: "red"}


class LiveView:
    """A bar of finished jobs ("landed 12/20, failed 1") over a compact table of every job."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.progress = Progress(
            SpinnerColumn(finished_text="[green]✓"),
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
        )
        self.submitting = self.progress.add_task(f"submitted 0/{total}", total=total)
        self.finishing = self.progress.add_task(f"landed 0/{total}, failed 0", total=total)
        self.jobs: list[Tracked] = []

    def show(self, jobs: list[Tracked]) -> None:
        self.jobs = list(jobs)
        landed, failed = tally(jobs)
        self.progress.update(
            self.submitting, completed=len(jobs), description=f"submitted {len(jobs)}/{self.total}"
        )
        self.progress.update(
            self.finishing,
            completed=landed + failed,
            description=f"landed {landed}/{self.total}, failed {failed}",
        )

    def __rich__(self) -> RenderableType:
        table = Table(box=None, pad_edge=False, header_style="dim")
        for column in ("#", "fault", "status", "via"):
            table.add_column(column)
        for job in self.jobs:
            progress = job.record.get("progress")
            running = f" {progress}%" if progress and not job.finished else ""
            table.add_row(
                str(job.n + 1),
                job.scenario.fault,
                status_text(job.status, running),
                job.record.get("via") or "",
            )
        return Group(self.progress, table)


def results_table(jobs: list[Tracked]) -> Table:
    """Every job: its fault, how it ended and how imagedock learned it, and where its images are
    or why it failed."""
    table = Table(
        title="Every job, as the receiver's API reports it",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    # Only the S3 keys fold on a narrow terminal: a job id must stay whole to be copied.
    table.add_column("job id", no_wrap=True, min_width=36)
    table.add_column("fault", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("via", no_wrap=True)
    table.add_column("images in S3, or why it failed", overflow="fold", min_width=20)
    table.add_column("as planned", justify="center", no_wrap=True)
    for job in jobs:
        record = job.record
        objects = [f"s3://{item['bucket']}/{item['key']}" for item in record.get("objects", [])]
        table.add_row(
            job.job_id or job.ref,
            job.scenario.fault,
            status_text(job.status),
            record.get("via") or "",
            Text("\n".join(objects)) if objects else Text(record.get("error") or "", "red"),
            verdict_text(job),
        )
    return table


def verdict_text(job: Tracked) -> Text:
    """✓ for a job that ended as its fault predicts, ✗ for one that did not, … until it ends."""
    if not job.finished:
        return Text("…", "cyan")
    return Text("✓", "green") if job.as_planned else Text("✗", "red")


def summary(jobs: list[Tracked]) -> tuple[bool, list[Text]]:
    """Whether every job ended as its fault predicts, and the lines that say so."""
    landed, failed = tally(jobs)
    polled = sum(job.status == Status.LANDED and job.record.get("via") == "poll" for job in jobs)
    counts = (
        f"{landed} of {len(jobs)} jobs landed in S3 ({polled} recovered by polling), "
        f"{failed} failed"
    )
    missed = [job for job in jobs if not job.as_planned]
    if not missed:
        return True, [Text.assemble(("✓ Every job ended as its fault predicts: ", "green"), counts)]
    verdict = f"✗ {len(missed)} of {len(jobs)} jobs did not end as their fault predicts: "
    lines = [Text.assemble((verdict, "red"), counts)]
    for job in missed:
        via = job.record.get("via")
        ended = f"{job.status} via {via}" if job.finished and via else job.status
        name = f"{job.job_id or job.ref} ({job.scenario.fault})"
        lines.append(Text(f"  {name}: {ended}, expected {job.scenario.prediction}"))
    return False, lines


def webhook_lines(figures: dict[str, int]) -> list[Text]:
    """The receiver's own count of what the faults did, so the labels above can be checked."""
    refused = ", ".join(
        name.removeprefix("rejected:").replace("_", " ")
        for name, count in sorted(figures.items())
        if name.startswith("rejected:") and count
    )
    count = figures.get
    taken = (
        f"{count('accepted', 0)} accepted, {count('duplicate', 0)} duplicates, "
        f"{count('early', 0)} early, {count('unsigned', 0)} unsigned (each confirmed with "
        f"Apiframe), {count('rejected', 0)} refused" + (f" ({refused})" if refused else "")
    )
    missed = f"{count('missed', 0)} (jobs the poller found finished before a webhook said so)"
    return [
        Text.assemble(("Webhooks, as GET /metrics counts them: ", "bold"), taken),
        Text.assemble(("Webhooks missed: ", "bold"), missed),
    ]


def tally(jobs: list[Tracked]) -> tuple[int, int]:
    """How many jobs landed, and how many ended any other way."""
    landed = sum(job.status == Status.LANDED for job in jobs)
    return landed, sum(job.finished for job in jobs) - landed


def status_text(status: str, suffix: str = "") -> Text:
    return Text(status + suffix, COLOURS.get(Status(status), "cyan"))
