"""Operations: the top layer that watches and steers the running system — the autoscaler's
beat task (queue signals from generations, decisions by infra_costs.fleet), Prometheus
metrics, alert rules, and the staff landing and fleet pages."""
