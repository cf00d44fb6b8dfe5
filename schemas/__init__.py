"""The contract of Sky Port: every message, value object and subject. Pure data, no I/O."""
