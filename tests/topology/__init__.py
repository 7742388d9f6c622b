"""Private servers of the tests own: PgBouncer, standby and failover, Galera, restarts."""
