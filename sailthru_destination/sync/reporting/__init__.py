"""What a run tells its operator: the summary, the report page and its parts, the audit.

The counts and reasons, the self-contained HTML page (timeline, assets), and the audit
that compares the state with what Sailthru holds.
"""
