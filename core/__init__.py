"""Sky Port core: the job aggregate, the SQL event store, its relay, commands and queries."""
