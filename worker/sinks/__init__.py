"""Downstream sinks: where `job.landed` and `job.failed` go once published.

A sink has a name (how logs, keys and dead letters refer to it: never a credential) and sends one
event; `delivery` gives every sink the same schedule, attempts, dead letters and redrive, keyed by
its name. A new kind of sink (SQS, NATS, a caller's own webhook) is one module here and one line
in `worker.deps.Deps.sinks`.

- `base`: the `Sink` protocol and what a send returns;
- `webhook`: a signed HTTP POST per the Standard Webhooks specification;
- `delivery`: one event to one sink, retried on its schedule, dead-lettered at its end.
"""
