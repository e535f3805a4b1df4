"""A loopback IG server for tests and ``traild demo --broker ig-sim`` (see ``server``)."""

from traild.testing.ig_sim.http import SimRequest
from traild.testing.ig_sim.server import IGSim, SimMarket, SimPosition, SimTick, open_ig_sim

__all__ = ["IGSim", "SimMarket", "SimPosition", "SimRequest", "SimTick", "open_ig_sim"]
