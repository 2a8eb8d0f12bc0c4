"""Sailthru as a destination inside the host frameworks data teams already run.

One module per host, each an optional extra and a thin shell over
:class:`~sailthru_destination.SailthruDestination` and the sync state of
:mod:`sailthru_destination.sync`: ``dlt`` (the ``dlt`` extra), ``singer`` (the ``singer``
extra, the ``target-sailthru`` command) and ``celery`` (the ``celery`` extra: tasks routed by
account and user).
"""
