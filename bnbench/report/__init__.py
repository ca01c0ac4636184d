"""Reports: pure functions of a launch directory's records (tables, figures, claim verdicts)."""
