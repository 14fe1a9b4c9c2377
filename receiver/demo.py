"""`imagedock demo`: a simulated Apiframe on loopback, and jobs submitted through the client."""

import asyncio

from rich.console import Console
from rich.table import Table

from receiver.serving import serving
from receiver.simulator import Simulator, SimulatorConfig
from worker.apiframe import ApiframeClient, GenerateRequest, GrokParams, Job
from worker.settings import Settings

PROMPTS = (
    "a lighthouse on a basalt cliff at dawn, long exposure",
    "an orange cat asleep on a stack of vinyl records",
    "a paper boat crossing a rain puddle, macro photograph",
    "a brutalist library lit by sodium lamps at night",
)
DEMO_KEY = "afk_demo_0000000000000000000000000000000000"


async def demo(settings: Settings, *, jobs: int) -> int:
    console = Console()
    simulator = Simulator(SimulatorConfig(queued_seconds=0.5, processing_seconds=2.0, seed=7))
    async with serving(simulator.app) as apiframe_url:
        console.print(f"Simulated Apiframe at [bold]{apiframe_url}[/]")
        async with ApiframeClient(apiframe_url, DEMO_KEY) as client:
            submitted = []
            for n in range(jobs):
                request = GenerateRequest(
                    prompt=PROMPTS[n % len(PROMPTS)], params=GrokParams(aspect_ratio="16:9")
                )
                submission = await client.submit(request, idempotency_key=f"demo-{n}")
                console.print(f"submitted [cyan]{submission.job_id}[/] ({submission.status})")
                submitted.append(submission.job_id)
            finished = await asyncio.gather(*(follow(client, console, j) for j in submitted))
    console.print(job_table(finished))
    return 0 if all(job.status == "COMPLETED" for job in finished) else 1


async def follow(client: ApiframeClient, console: Console, job_id: str) -> Job:
    """Poll as Apiframe advises for images (every 2 to 3 s; faster here), printing each change."""
    seen: tuple[str, int | None] | None = None
    while True:
        job = await client.get_job(job_id)
        if (job.status, job.progress) != seen:
            seen = (job.status, job.progress)
            console.print(f"  {job_id[:8]}  {job.status:<10} progress={job.progress}")
        if job.terminal:
            return job
        await asyncio.sleep(0.25)


def job_table(jobs: list[Job]) -> Table:
    table = Table(title="Jobs")
    for column in ("job", "status", "images", "error"):
        table.add_column(column)
    for job in jobs:
        table.add_row(job.id, job.status, "\n".join(job.image_urls), job.error or "")
    return table
