"""Reading the model: rows from CSV, JSON lines or SQL, and their columns.

Sources, the SQL dialects and PostgreSQL dates, and the column checks and types
that say what each column becomes in Sailthru.
"""
