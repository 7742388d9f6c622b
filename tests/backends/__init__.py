"""Behaviour on every backend: SQLite, PostgreSQL and MySQL/MariaDB."""
