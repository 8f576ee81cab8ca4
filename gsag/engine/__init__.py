"""Training and evaluation: `gsag.engine.train.train(cfg)`, `gsag.engine.evaluate.evaluate`,
`gsag.engine.infer.infer`, `gsag.engine.checkpoint.load_model`, schedules and DDP helpers. The
submodules are imported by their full names (a re-export would hide the `train` and `evaluate`
modules)."""

from gsag.lazy import lazy_attributes

# no re-exports: only submodules, reachable as `gsag.engine.checkpoint` after `import gsag`
__getattr__, __dir__ = lazy_attributes(__name__, {})
