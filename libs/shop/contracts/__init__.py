"""Messages on the wire: commands, events, queries, replies and read-model views (msgspec, JSON)."""
