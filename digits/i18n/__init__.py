"""The languages a person can read the service in: sentences marked for translation, and the catalogs."""
