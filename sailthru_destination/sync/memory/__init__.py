"""The run's memory and its lock.

The SQLite state of what was applied, seen, sent, in doubt or promised (write-ahead
intents), how promises are settled, and the lock that keeps a second run out.
"""
