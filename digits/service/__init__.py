"""The web service: config, uploads, answers, errors, routes, middleware and metrics. main.py assembles it."""
