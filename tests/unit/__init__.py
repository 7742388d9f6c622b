"""Unit tests: no database server, at most a SQLite file."""
