"""App scaling by school calendar and by load: the policy (pure) and the Docker-target service."""
