"""firsttag: a self-hosted, first-party conversion-tracking tag server.

The package map is in docs/architecture.md.
"""

__version__ = "0.2.0"
