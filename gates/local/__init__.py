"""The ``local`` gate: jobs as process groups on this host, split into virtual nodes."""
