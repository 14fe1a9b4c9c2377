"""Downstream sinks: where `job.landed` and `job.failed` go once published.

A sink has a name (how logs, keys and dead letters refer to it: never a credential), says which
events it takes, and sends one; `delivery` gives every sink the same schedule, attempts, dead
letters and redrive, keyed by its name. A new kind of sink (SQS, NATS) is one module here and
one line in `worker.deps.Deps.sinks`.

- `base`: the `Sink` protocol and what a send returns;
- `webhook`: a signed HTTP POST per the Standard Webhooks specification;
- `callback`: a `/v2/` caller's own webhook, as Apiframe sends one, to the job's own address;
- `delivery`: one event to one sink, retried on its schedule, dead-lettered at its end.
"""
