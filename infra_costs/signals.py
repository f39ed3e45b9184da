"""Signals infra_costs sends; other apps (generations) connect receivers to them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after `import_jobs` (command or API) wrote GPU runs, inside its transaction, with
# `model_slugs`: the set of model slugs the accepted rows name. generations creates the
# models it does not know yet (inactive).
runs_imported = Signal()
