"""Writes of the generations app, one module per verb of a job's life:

- `rates`: a model's price changes by a new version (`rate_set`);
- `submission`: validate, quotas and the pinned hold, idempotency, publish on commit
  (`generation_submit`);
- `execution`: a worker's run — claim, lease and heartbeat, finish with capture or release in
  the job's terminal transaction (`generation_run`);
- `cancel`: a queued job stops and its hold is released (`generation_cancel`);
- `dispatch`: publish waiting jobs of fleet-managed pools when a node has a free slot
  (`jobs_dispatch_waiting`);
- `reaper`: republish lost queued jobs, requeue jobs whose worker is gone (lapsed lease) for
  another attempt, fail them after the last (`jobs_reap`).

`from generations import services` gives the verbs callers use. Reads (the price in force, the
effective params schema) are in `generations.selectors`.
"""

from generations.services.cancel import generation_cancel
from generations.services.dispatch import jobs_dispatch_waiting
from generations.services.execution import generation_run
from generations.services.rates import rate_set
from generations.services.reaper import jobs_reap
from generations.services.submission import generation_submit

__all__ = [
    "generation_cancel",
    "generation_run",
    "generation_submit",
    "jobs_dispatch_waiting",
    "jobs_reap",
    "rate_set",
]
