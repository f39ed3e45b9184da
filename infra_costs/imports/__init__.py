"""Imports of pools (rate versions), node uptime and GPU runs — CSV files (the commands) or
JSON rows (the staff API), with the formats of spec §5. The public entry points are the
services (`infra_costs.services.pools_import`, `uptime_import`, `jobs_import` and their
`_csv` twins); this package holds their parts.

Every import is:

* **validated row by row**, streaming: each bad row is reported with its key (the CSV line
  number, the header being line 1; the row index for the API) and every reason;
* **all-or-nothing**: one bad row refuses the whole input (`ImportRefused`, a
  `validation_error`) and nothing is written, unless `skip_invalid` — then the good rows are
  imported and the bad ones reported;
* **idempotent**: a row already in the database with the same data is skipped (counted as
  "already present"); the same key with different data is an error;
* **bulk**: the checked uptime and job rows are COPYed into a temporary table, the checks
  that need the database (unknown pool or node, duplicates, conflicts) are set-based queries
  over it, and the insert is one `INSERT … SELECT … ON CONFLICT DO NOTHING`. Pool files are
  small and take the ORM.

Keys: pools `(pool, effective_from)`, uptime `(node, started_at, ended_at)`, jobs
`external_id`. A node belongs to one pool for good (the uptime import creates unknown nodes in
the row's pool); a job's pool is its node's pool.

Modules: `results` (the result and the refusal), `rows` (CSV and JSON row sources), `checks`
(field checks and the shared driver steps), and one writer per file kind: `pools`, `uptime`,
`jobs`.
"""

from infra_costs.imports.results import ImportRefused, ImportResult
from infra_costs.imports.rows import open_csv

__all__ = ["ImportRefused", "ImportResult", "open_csv"]
