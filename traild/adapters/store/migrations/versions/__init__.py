"""Revisions. Frozen snapshots: they never import the models, so history cannot drift."""
