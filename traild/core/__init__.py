"""The pure trailing core: no I/O, no clock, no third-party imports."""
