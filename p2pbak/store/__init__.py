"""Coordinator database (schema, migrations, every SQL statement), fragment store, caches."""
