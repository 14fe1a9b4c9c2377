"""The ledger: everything imagedock keeps in Redis about jobs, and the one way it changes.

- `keys`: every Redis key name imagedock writes;
- `ledger`: the `Ledger` (records, their moves, the job log written), over `lua/` scripts that
  `scripts` loads, each change one script call;
- `records`: what a record holds; `log`: log entries, their ids and the stdout echo;
- `paging`: the job list a page at a time; `batching`: one script called by many at once;
- `marks`: what is done once an interval, and leases;
- `waiting`: the submit queue, callers in turn, and the pace Apiframe's limits set.
"""
