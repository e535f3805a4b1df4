"""The configuration: the file and environment (``settings``, its ``models`` and ``env``
source) and the database's overrides laid over them (``service``)."""
