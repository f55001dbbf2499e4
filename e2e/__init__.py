"""The e2e layer: the planned stack created on a real Docker engine (images built here, an applier that
follows the Docker provider, stand-ins for the outside world)."""
