"""What outlives a run: the journal, the home directory, traces and the L5 store."""
