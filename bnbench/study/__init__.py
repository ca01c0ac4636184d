"""Studies: ablations/<name>.yaml -> the jobs of one Hydra multirun, and their launch records."""
