"""`pytest tests/simulation -k replay --seed N` replays one seed (or SIM_SEED=N)."""

import logging

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--seed", type=int, default=None, help="fault simulation: replay this seed (-k replay)"
    )


@pytest.fixture
def world(db):
    """The organizations and models every seed shares, created once; the services' logs are
    quiet meanwhile (thousands of injected faults would flood the output)."""
    from tests.simulation.harness import World

    logging.disable(logging.CRITICAL)
    try:
        yield World.create()
    finally:
        logging.disable(logging.NOTSET)
