"""Test doubles that users and tests may import (as trio ships ``trio.testing``).

``ig_sim``: a loopback model of IG's REST API and Lightstreamer as IG documents them today.
Nothing under ``traild.adapters`` imports from here: adapters hold only production code.
"""
