"""Scenario planner (issue 12b): growth scenarios from measured costs.

- `inputs`: the inputs of a scenario, their JSON form and their validation (one set of rules
  for the staff page, the API and saved scenarios);
- `calculation`: the outputs — pure functions over Decimal, no database;
- `selectors`: measured costs per generation and plan prices, saved scenarios, evaluation;
- `services`: saving a scenario (audited);
- `forms`, `chart`: the staff page's form and its SVG chart geometry.
"""
