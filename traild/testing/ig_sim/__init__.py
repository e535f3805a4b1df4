"""A loopback IG server for tests and ``traild demo --broker ig-sim`` (see ``server``)."""

from traild.testing.ig_sim.http import SimRequest
from traild.testing.ig_sim.market import SimMarket, SimPosition, SimTick
from traild.testing.ig_sim.server import IGSim, open_ig_sim

__all__ = ["IGSim", "SimMarket", "SimPosition", "SimRequest", "SimTick", "open_ig_sim"]
