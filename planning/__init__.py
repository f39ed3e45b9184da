"""Planning (issue 12): decision support from measured costs — growth scenarios, pool
economics (utilization → cost per generation, rent vs buy) and margins per customer and plan.
A top-layer app beside `operations`: it reads generations, credits, infra_costs and accounts and
is read by none of them."""
