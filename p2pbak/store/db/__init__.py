"""The coordinator's database: schema, migrations, one module per table group."""
