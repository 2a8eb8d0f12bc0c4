"""From a record's properties to the values Sailthru holds.

Var names, value coercion, amounts in cents, nulls and the row contract: pure functions
with no I/O, used by every feature and by the sync's model.
"""
