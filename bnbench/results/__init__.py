"""The local results store: one JSON record per run, its curves beside it."""
