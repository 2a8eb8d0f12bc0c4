"""The package version, in one place."""

__version__ = "0.2.0.dev0"
"""The version of this package (PEP 440)."""
