"""Payments with Stripe: subscriptions, credit packs, webhooks (each event exactly once),
overage invoices, auto top-up and billing emails. See docs/billing.md.

Modules:

* ``gateway`` — the only module that imports ``stripe``: a thin client wrapper (api base from
  ``STRIPE_API_BASE``, Stripe errors mapped to ``config.errors``, idempotency keys from our ids);
* ``catalog`` — credit packs and ``stripe_sync`` (Stripe products/prices for plans and packs);
* ``customers`` — the organization ↔ Stripe customer link;
* ``checkout`` — Checkout / Customer Portal sessions, plan change and cancel, settings forms;
* ``webhooks`` — store-then-process of webhook events, retries, reprocess;
* ``handlers`` — what each event type does (registry);
* ``subscriptions``, ``purchases``, ``overage``, ``topup`` — the effects, each idempotent;
* ``emails`` — plain-text emails, each sent once per dedupe key;
* ``selectors`` — reads for the billing page and the admin;
* ``models`` — the billing records (app label ``credits``; loaded by ``credits/models.py``);
* ``admin`` — their staff admin (registered by ``credits/admin.py``);
* ``views``, ``forms``, ``urls`` — the billing page under /credits/billing/ and the webhook
  endpoint under /stripe/;
* ``templates/billing/`` (page, partials, emails) and ``templatetags/billing_ui.py``, both named
  in ``TEMPLATES`` (settings).

Credits still move only through ``credits.ledger`` (billing is part of the credits app, so it
may call it inside the Stripe event's transaction; other apps use ``credits.services``).
"""
