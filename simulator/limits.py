"""Apiframe's submit limits, as the simulator keeps them per API key: a bucket of
`submit_rate` submits a second that holds one second's worth, and at most `max_in_flight`
jobs not yet finished. A submit past either is answered 429 with `Retry-After`, and counted:
`throttled` is the simulator's own count of every time a client went over."""

import math
import time
from dataclasses import dataclass, field


@dataclass
class SubmitLimits:
    throttled: int = 0
    _tokens: dict[str, float] = field(default_factory=dict)
    _filled_at: dict[str, float] = field(default_factory=dict)

    def refusal(
        self, key: str, rate: float | None, in_flight: int, most_in_flight: int | None
    ) -> float | None:
        """None if the key may submit now (its token taken), else the seconds to wait."""
        if most_in_flight is not None and in_flight >= most_in_flight:
            self.throttled += 1
            return 1.0
        if rate is None:
            return None
        now = time.monotonic()
        elapsed = now - self._filled_at.get(key, now)
        tokens = min(rate, self._tokens.get(key, rate) + elapsed * rate)
        self._filled_at[key] = now
        if tokens < 1:
            self._tokens[key] = tokens
            self.throttled += 1
            return math.ceil((1 - tokens) / rate * 10) / 10
        self._tokens[key] = tokens - 1
        return None
