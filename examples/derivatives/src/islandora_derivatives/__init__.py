"""Example job code: derivatives of repository objects, made by Gearman workers."""
