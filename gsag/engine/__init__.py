"""Training and evaluation: `gsag.engine.train.train(cfg)`, `gsag.engine.evaluate.evaluate` and
`infer`, `gsag.engine.checkpoint.load_model`, schedules and DDP helpers. The submodules are
imported by their full names (a re-export would hide the `train` and `evaluate` modules)."""
