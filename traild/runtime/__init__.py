"""The trio runtime: actors, router, gateway and supervisor. Imports core and ports only."""
