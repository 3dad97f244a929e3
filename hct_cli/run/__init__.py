"""Running a score as a library call: its configuration, its assembly, ``perform``."""
