"""The real servers on loopback, with the files the stack deploys (see `configs.topology.loopback_topology`)."""
