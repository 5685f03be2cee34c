"""Domain models and state machines; no framework, no I/O."""
