"""A faithful fake Sailthru for tests: a real HTTP server on loopback with Sailthru's quirks."""
