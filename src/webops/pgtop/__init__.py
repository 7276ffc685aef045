"""`webops pgtop`: top for PostgreSQL (the Perl pgtop's features, and what pg_activity users expect)."""
