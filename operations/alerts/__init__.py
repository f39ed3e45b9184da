"""Alert rules: what they measure (`rules`), the writes that open, escalate and resolve alerts
and email staff (`services`), and the reads of the staff pages (`selectors`)."""
