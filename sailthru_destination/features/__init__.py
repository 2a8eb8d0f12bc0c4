"""One module per kind of record: what to send, what to read first, how to verify.

Profiles, events, purchases, returns, carts, imports and postbacks; the destination
facade routes each record here, and each sends through the transport layer.
"""
