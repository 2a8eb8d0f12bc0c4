"""Large batches through Sailthru's job API.

The job file, the job's lifecycle, the cost model that chooses bulk or per-record
calls, and the purchase import.
"""
