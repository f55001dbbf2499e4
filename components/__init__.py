"""The 1001 Stories platform as Pulumi components, and the settings they are built from."""
