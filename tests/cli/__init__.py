"""The tokenstore-sql command line."""
