"""The `imagedock` command: one entry point, a subcommand per job."""

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

import structlog

from receiver.serving import uvicorn_config
from receiver.simulator.flags import add_config_flags, config_from_args
from worker.logs import configure_logging
from worker.settings import Settings, SettingsError, load_settings

Command = Callable[[argparse.Namespace, Settings], int]


def run_simulator(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from receiver.simulator import Simulator

    simulator = Simulator(config_from_args(args))
    structlog.get_logger("simulator").info(
        "simulator.listening", url=f"http://{args.host}:{args.port}"
    )
    uvicorn.Server(uvicorn_config(simulator.app, host=args.host, port=args.port)).run()
    return 0


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from receiver.demo import demo

    return asyncio.run(demo(settings, jobs=args.jobs))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagedock", description="Grok Imagine jobs through Apiframe, landed in S3."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    simulator = commands.add_parser("simulator", help="serve a simulated Apiframe v2 API")
    simulator.add_argument("--host", default="127.0.0.1")
    simulator.add_argument("--port", type=int, default=8900)
    add_config_flags(simulator)
    simulator.set_defaults(handler=run_simulator)

    demo = commands.add_parser("demo", help="run everything locally and show jobs complete")
    demo.add_argument("--jobs", type=int, default=1, help="how many jobs to submit")
    demo.set_defaults(handler=run_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"imagedock: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    handler: Command = args.handler
    try:
        return handler(args, settings)
    except SettingsError as exc:
        print(f"imagedock: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
