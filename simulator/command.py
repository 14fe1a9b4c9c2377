"""`imagedock simulator`: a simulated Apiframe on a port of its own, every knob a flag."""

import argparse
from collections.abc import Sequence

import structlog
import uvicorn

from imagedock.http_server import uvicorn_config
from simulator.app import Simulator
from simulator.flags import add_config_flags, config_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imagedock simulator", description="Serve a simulated Apiframe v2 image API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    add_config_flags(parser)
    return parser


def run_simulator(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    simulator = Simulator(config_from_args(args))
    structlog.get_logger("simulator").info(
        "simulator.listening", url=f"http://{args.host}:{args.port}"
    )
    uvicorn.Server(uvicorn_config(simulator.app, host=args.host, port=args.port)).run()
    return 0
