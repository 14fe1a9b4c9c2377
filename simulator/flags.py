"""Every SimulatorConfig knob as a command-line flag, derived from the dataclass itself."""

import argparse
import dataclasses
import typing
from typing import Any

from simulator.config import Fault, SimulatorConfig

HINTS = typing.get_type_hints(SimulatorConfig)
SKIPPED = {"faults", "api_keys"}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("simulated behaviour")
    group.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY",
        help="accept only these keys (repeatable); by default any key starting with afk_",
    )
    for field in dataclasses.fields(SimulatorConfig):
        if field.name in SKIPPED:
            continue
        flag = "--" + field.name.replace("_", "-")
        hint = HINTS[field.name]
        default = field.default
        if hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif typing.get_origin(hint) is typing.Literal:
            group.add_argument(flag, choices=typing.get_args(hint), default=default)
        elif typing.get_origin(hint) is tuple:
            parse = comma_floats if typing.get_args(hint)[0] is float else comma_strings
            group.add_argument(flag, type=parse, default=default, metavar="A,B,...")
        else:
            base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
            group.add_argument(flag, type=base, default=default)
    group.add_argument(
        "--fail-next",
        action="append",
        default=[],
        metavar="STATUS[xN]",
        help="answer the next N requests with STATUS (402, 429, 403, 500, 502, 503)",
    )


def comma_floats(text: str) -> tuple[float, ...]:
    return tuple(float(part) for part in text.split(",") if part.strip())


def comma_strings(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    values: dict[str, Any] = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(SimulatorConfig)
        if field.name not in SKIPPED
    }
    if args.api_key:
        values["api_keys"] = tuple(args.api_key)
    config = SimulatorConfig(**values)
    for spec in args.fail_next:
        status, _, times = spec.partition("x")
        config.faults.append(Fault(int(status), int(times or 1)))
    return config
