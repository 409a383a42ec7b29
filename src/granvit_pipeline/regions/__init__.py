"""Region data contract, readers, demo data, validation and shards (no Kedro imports)."""
