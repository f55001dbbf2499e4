"""The Kubernetes target's components: the same settings and renderers as the Docker target's."""
