"""The service as it runs: processes, workers, nginx, PostgreSQL, containers and the command lines."""
