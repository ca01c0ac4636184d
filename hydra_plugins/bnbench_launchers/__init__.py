"""Hydra plugin: bnbench's launchers (hydra/launcher=slurm, conf/hydra/launcher/slurm.yaml)."""
