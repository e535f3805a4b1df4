"""traild: a trailing-stop daemon for FX trades."""

__version__ = "0.3.2"
