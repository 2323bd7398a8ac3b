"""What a user runs, end to end, built from the engine's parts (one module per workflow).

- `pipeline`: train, pretrain, evaluate and predict on a project (config defaults, preprocessing,
  storing a model version).
- `recommended`: THE recommended pipeline (method, pretraining, starting point, config).
- `learn_loop`: the background learning loop (pretrain once, train, promote or keep, re-score).
- `promotion`: the rule that makes a trained candidate the active model, or keeps the old one.
- `active_loop`: score the unlabeled pool and pick the next samples to label.
- `prediction_export`: write the active model's predictions (NIfTI, DICOM-SEG).
- `demo`, `demo_loop`: the demo project (MNI152 brain) and its headless round.

Workflows import the parts (io, store, data, models, methods, ssl, semi, training, inference,
active) and `engine.project`; never the CLI, the UI or the benchmarks.
"""
