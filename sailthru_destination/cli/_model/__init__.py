"""The model a ``sync`` reads, as the command line settles it.

Opening the file or query, ``--map`` and ``--types`` and the column check, defaults
that depend on the columns, and which state file holds the model.
"""
