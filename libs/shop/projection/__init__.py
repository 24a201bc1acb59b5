"""The projection engine: consume loop and checkpoints, parking and dead letters, rebuilds, store adapters."""
