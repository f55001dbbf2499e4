"""The Kubernetes target's manifests, as pure functions of the settings (README: The Kubernetes target)."""
