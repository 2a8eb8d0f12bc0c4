"""Shared test settings. The `fake_sailthru` fixture comes from the package's pytest plugin."""
