"""Era 1, the forking CGI server: its RFC 3875 items, its confinement, its processes."""
