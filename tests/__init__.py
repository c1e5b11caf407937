"""The suite: one folder per kind of test, each a pytest marker of its own name (conftest.py)."""
