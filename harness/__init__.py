"""The real servers on loopback, with the files the stack deploys (see `model.topology.loopback_topology`)."""
