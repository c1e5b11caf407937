"""Corrections from users: signed prediction ids, their store in SQL, and the operators' review."""
