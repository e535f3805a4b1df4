"""The daemon's composition: ``app`` wires the runtime to the adapters; ``reload`` (what a
SIGHUP applies), ``ownership`` (the account's lease), ``halt`` (the global halt file, light
enough for the CLI) and ``demo``. Nothing here is imported by the core or the runtime."""
