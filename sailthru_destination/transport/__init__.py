"""The one door to Sailthru: the only code that talks HTTP.

It signs, paces, retries, classifies Sailthru's answers and records every call redacted;
everything above it sends through :class:`~.api.SailthruApi` and nothing else.
"""
