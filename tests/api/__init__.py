"""The service in process (FastAPI's test client): every route, error and bound, no process started."""
