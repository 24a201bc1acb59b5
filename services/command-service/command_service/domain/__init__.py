"""Aggregates as pure functions: decide(state, command) -> events, evolve(state, event) -> state."""
