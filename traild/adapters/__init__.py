"""I/O behind the ports: the store, brokers, feeds and systemd; never imports the runtime."""
