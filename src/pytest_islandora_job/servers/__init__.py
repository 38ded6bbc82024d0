"""How a gearmand comes to life: a local process, a Docker container, or an external server."""
