"""The scheduler: a view folded from events, pure placement policies, and the bus service."""
