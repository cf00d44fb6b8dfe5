"""The bus adapter: the only package that imports ``nats``."""
