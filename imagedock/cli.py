"""The `imagedock` command: one entry point, a subcommand per job."""

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from worker.apiframe.catalog import GENERATE, OPERATIONS
from worker.ledger.waiting import Priority
from worker.settings import Settings, SettingsError, load_settings
from worker.status import Status
from worker.structured_logging import configure_logging

Command = Callable[[argparse.Namespace, Settings], int]
EXTRA_HINT = (
    "imagedock {command} needs the simulator extra, which this installation lacks: "
    "pip install 'imagedock[simulator]'"
)
JSON_HELP = "JSON lines instead of a table (the default when the output is not a terminal)"
SERVERS = frozenset({"receiver", "worker", "simulator"})  # they log to stdout, the rest to stderr


def run_receiver(args: argparse.Namespace, settings: Settings) -> int:
    from imagedock.processes import run_receiver

    return run_receiver(settings, host=args.host, port=args.port, workers=args.workers)


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    import uvloop

    from imagedock.processes import run_worker

    return uvloop.run(run_worker(settings))


def run_simulator(args: argparse.Namespace, settings: Settings) -> int:
    try:
        from simulator.command import run_simulator
    except ImportError:
        print(EXTRA_HINT.format(command="simulator"), file=sys.stderr)
        return 2
    return run_simulator(args.options)  # its own parser reads them


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    try:
        from simulator.demo import run
    except ImportError:
        print(EXTRA_HINT.format(command="demo"), file=sys.stderr)
        return 2
    return run(settings, jobs=args.jobs, port=args.port, stay=not args.exit)


def run_submit(args: argparse.Namespace, settings: Settings) -> int:
    from imagedock.commands import submit, submit_file

    if args.source is not None:
        if args.prompt is not None:
            print("imagedock submit: give a prompt or --from, not both", file=sys.stderr)
            return 2
        return asyncio.run(submit_file(settings, args.source))

    metadata = dict(pair.split("=", 1) for pair in args.metadata)
    return asyncio.run(
        submit(
            settings,
            args.prompt,
            operation=args.operation,
            model=args.model,
            params=args.params,
            action=args.action,
            parent=args.parent,
            image=args.image,
            aspect_ratio=args.aspect_ratio,
            metadata=metadata,
            idempotency_key=args.idempotency_key,
            priority=Priority[args.priority],
        )
    )


def run_models(args: argparse.Namespace, settings: Settings) -> int:
    from imagedock.commands import models

    return models(args.operation)


def run_jobs(args: argparse.Namespace, settings: Settings) -> int:
    from imagedock.commands import jobs

    return asyncio.run(
        jobs(settings, args.limit, status=args.status, model=args.model, as_json=args.json)
    )


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    from imagedock.commands import status

    return asyncio.run(status(settings, args.job, as_json=args.json))


def run_tail(args: argparse.Namespace, settings: Settings) -> int:
    from imagedock.commands import tail

    return asyncio.run(tail(settings, follow=args.follow, lines=args.lines, as_json=args.json))


def run_check(args: argparse.Namespace, settings: Settings) -> int:
    from imagedock.checks import check

    return asyncio.run(check(settings, worker_only=args.worker))


def run_track(args: argparse.Namespace, settings: Settings) -> int:
    from imagedock.commands import track

    return asyncio.run(track(settings, str(args.job_id)))


def run_cancel(args: argparse.Namespace, settings: Settings) -> int:
    from imagedock.commands import cancel

    return asyncio.run(cancel(settings, args.job))


def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    filters = {
        "status": args.status,
        "since": args.since,
        "until": args.until,
        "model": args.model,
        "resubmit": args.resubmit,
        "dryRun": args.dry_run,
        "priority": args.priority,
    }
    if args.job is not None:
        if any(value for name, value in filters.items() if name != "priority"):
            print(
                "imagedock replay: name one job, or a filter (--status, --since)", file=sys.stderr
            )
            return 2
        from imagedock.commands import replay

        return asyncio.run(replay(settings, args.job))
    if args.status is None or args.since is None:
        print("imagedock replay: name a job, or both --status and --since", file=sys.stderr)
        return 2
    from imagedock.bulk_replay import bulk_replay

    return asyncio.run(bulk_replay(settings, filters, follow=not args.no_wait))


def run_redrive(args: argparse.Namespace, settings: Settings) -> int:
    from imagedock.commands import redrive

    return asyncio.run(redrive(settings))


def bounded(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from `low` to `high`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be an integer from {low} to {high}, not {text!r}"
            )
        return value

    return parse


def json_object(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, not {text[:60]!r}")
    return value


def metadata_pair(text: str) -> str:
    if "=" not in text or text.startswith("="):
        raise argparse.ArgumentTypeError(f"metadata must be key=value, not {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagedock", description="Image jobs through Apiframe, every output landed in S3."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    receiver = commands.add_parser("receiver", help="serve imagedock's API and webhook endpoint")
    receiver.add_argument("--host", default="127.0.0.1")
    receiver.add_argument("--port", type=int, default=8000)
    receiver.add_argument(
        "--workers",
        type=bounded(1, 64),
        default=1,
        help="processes sharing the port (one per core; each holds its own clients)",
    )
    receiver.set_defaults(handler=run_receiver)

    worker = commands.add_parser("worker", help="land completed jobs in S3 (arq workers)")
    worker.set_defaults(handler=run_worker)

    submit = commands.add_parser("submit", help="submit one job from the shell")
    submit.add_argument("prompt", nargs="?", help="for the routes that take one")
    submit.add_argument(
        "--operation",
        choices=list(OPERATIONS),
        default=GENERATE,
        help="Apiframe's route after /v2/ (images/generate)",
    )
    submit.add_argument(
        "--model", help="see `imagedock models --operation ROUTE` (grok-imagine-image)"
    )
    submit.add_argument(
        "--params",
        type=json_object,
        help="the model's params block, or an action's fields, as a JSON object; "
        'a URL may be {"s3": KEY} of an object imagedock landed',
    )
    submit.add_argument("--action", help="an action route's action (upsample, stems...)")
    submit.add_argument("--parent", help="the job an action acts on: its jobId or ref")
    submit.add_argument("--image", help="Grok: a reference image URL, for image-to-image")
    submit.add_argument("--aspect-ratio", choices=["1:1", "2:3", "3:2", "16:9", "9:16"])
    submit.add_argument(
        "--metadata", action="append", default=[], type=metadata_pair, metavar="KEY=VALUE"
    )
    submit.add_argument("--idempotency-key")
    submit.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="FILE.jsonl",
        help="submit every job of a JSON Lines file: one POST /jobs body a line, with an "
        "optional idempotencyKey",
    )
    submit.add_argument(
        "--priority",
        choices=[p.name for p in Priority],
        default="normal",
        help="what goes first among this caller's own waiting jobs",
    )
    submit.set_defaults(handler=run_submit)

    models = commands.add_parser(
        "models", help="list Apiframe's job routes, or one route's models and params blocks"
    )
    models.add_argument("--operation", choices=list(OPERATIONS), help="the route to list")
    models.set_defaults(handler=run_models)

    jobs = commands.add_parser("jobs", help="list the most recent jobs")
    jobs.add_argument("--limit", type=bounded(1, 500), default=20)
    jobs.add_argument("--status", type=str.upper, choices=[status.value for status in Status])
    jobs.add_argument("--model", help="only this model's jobs")
    jobs.add_argument("--json", action="store_true", help=JSON_HELP)
    jobs.set_defaults(handler=run_jobs)

    status = commands.add_parser(
        "status", help="show one job's record and log; without a job, the submit queue's pace"
    )
    status.add_argument("job", nargs="?", help="Apiframe job id or imagedock ref")
    status.add_argument("--json", action="store_true", help=JSON_HELP)
    status.set_defaults(handler=run_status)

    tail = commands.add_parser("tail", help="show the global job log")
    tail.add_argument("-f", "--follow", action="store_true", help="wait for new entries")
    tail.add_argument("-n", "--lines", type=bounded(1, 10_000), default=50)
    tail.add_argument("--json", action="store_true", help=JSON_HELP)
    tail.set_defaults(handler=run_tail)

    track = commands.add_parser("track", help="adopt a job submitted elsewhere; polling lands it")
    track.add_argument("job_id", type=uuid.UUID, help="the Apiframe job id")
    track.set_defaults(handler=run_track)

    cancel = commands.add_parser("cancel", help="cancel a job still waiting to be submitted")
    cancel.add_argument("job", help="Apiframe job id or imagedock ref")
    cancel.set_defaults(handler=run_cancel)

    replay = commands.add_parser(
        "replay",
        help="land a job, or every job a filter selects, again and deliver its events again; "
        "or make those jobs again (--resubmit)",
    )
    replay.add_argument("job", nargs="?", help="one job: Apiframe job id or imagedock ref")
    replay.add_argument("--status", type=str.upper, choices=[status.value for status in Status])
    replay.add_argument("--since", help="created since: ISO 8601, Unix time, or an age (24h)")
    replay.add_argument("--until", help="created until, as --since")
    replay.add_argument("--model", help="only jobs of this model")
    replay.add_argument(
        "--resubmit", action="store_true", help="make each job again, as a new job naming it"
    )
    replay.add_argument("--dry-run", action="store_true", help="count the jobs, do nothing")
    replay.add_argument(
        "--priority", choices=[p.name for p in Priority], default="low", help="of resubmits"
    )
    replay.add_argument(
        "--no-wait", action="store_true", help="start it and print its id; do not follow it"
    )
    replay.set_defaults(handler=run_replay)

    redrive = commands.add_parser("redrive", help="deliver every dead-lettered event again")
    redrive.set_defaults(handler=run_redrive)

    check = commands.add_parser(
        "check", help="check Redis, Apiframe, S3, the receiver and a live worker"
    )
    check.add_argument(
        "--worker",
        action="store_true",
        help="only Redis and a live worker on this host: a worker container's probe",
    )
    check.set_defaults(handler=run_check)

    # Its flags belong to the simulator's own parser, loaded only when it runs (see main()).
    simulator = commands.add_parser(
        "simulator",
        help="serve a simulated Apiframe v2 API ('imagedock simulator --help' lists every knob)",
        add_help=False,
    )
    simulator.set_defaults(handler=run_simulator)

    demo = commands.add_parser(
        "demo",
        help="run the whole service locally: jobs with faults land in S3, then the dashboard",
    )
    demo.add_argument(
        "--jobs", type=bounded(1, 200), default=20, help="how many jobs to submit (20)"
    )
    demo.add_argument(
        "--port",
        type=bounded(0, 65535),
        help="the receiver's port (default: a free one; 8000 against the real Apiframe)",
    )
    demo.add_argument(
        "--exit", action="store_true", help="stop once the jobs have ended, not at Ctrl-C"
    )
    demo.set_defaults(handler=run_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, options = parser.parse_known_args(argv)
    if options and args.command != "simulator":
        parser.error(f"unrecognized arguments: {' '.join(options)}")
    args.options = options
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"imagedock: {exc}", file=sys.stderr)
        return 2
    # A server's log is its output; a command's output is for the shell, its log for the person.
    configure_logging(settings.log_level, stream=sys.stdout if args.command in SERVERS else None)
    handler: Command = args.handler
    try:
        return handler(args, settings)
    except SettingsError as exc:
        print(f"imagedock: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # A server's failure is logged with its traceback, for the log shipper; a command's is
        # one line for the person at the shell. Either way the exit status says it failed.
        if args.command in SERVERS:
            log = structlog.get_logger("imagedock")
            log.error("imagedock.failed", command=args.command, error=repr(exc), exc_info=True)
        else:
            print(f"imagedock {args.command}: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
