"""A faithful fake Sailthru for tests: a real HTTP server on loopback with Sailthru's quirks.

with FakeSailthru(api_key="k", api_secret="s", faults=Faults(server_error_rate=0.01)) as fake:
    client = SailthruClient("k", "s", api_url=fake.url)
"""

from __future__ import annotations

from ._fake import FakeSailthru
from ._faults import Faults
from ._inferred import Inferred

__all__ = ["FakeSailthru", "Faults", "Inferred"]
