"""The compiled program: a score turned into stations, routes and resolved inputs."""
