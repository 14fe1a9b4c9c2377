"""A faithful Apiframe v2 simulator for tests, benchmarks and the demo."""

from receiver.simulator.app import Simulator
from receiver.simulator.config import Fault, SimulatorConfig

__all__ = ["Fault", "Simulator", "SimulatorConfig"]
