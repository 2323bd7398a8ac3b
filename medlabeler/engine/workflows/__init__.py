"""What a user runs, end to end, built from the engine's parts (one module per workflow).

- `train`: train a model on the project's labels (a candidate, then promote or keep).
- `pretrain`: self-supervised pretraining of an encoder on the project's images (or a curriculum).
- `evaluate`: the metrics of a model version on a split.
- `predict`: probabilities, features and embeddings of samples from a model version.
- `run_config`: the config keys and defaults of train and pretrain, and what they settle (device,
  preprocessing, network, the recommended pipeline for a project).
- `model_versions`: store a trained network as a model version, and load one back.
- `recommended`: THE recommended pipeline (method, pretraining, starting point, config).
- `learn_loop`: the background learning loop (pretrain once, train, promote or keep, re-score).
- `promotion`: the rule that makes a trained candidate the active model, or keeps the old one.
- `active_loop`: score the unlabeled pool and pick the next samples to label.
- `prediction_export`: write the active model's predictions (NIfTI, DICOM-SEG).
- `demo`, `demo_loop`: the demo project (MNI152 brain) and its headless round.

Workflows import the parts (io, store, data, models, methods, ssl, semi, training, inference,
active) and `engine.project`; never the CLI, the UI or the benchmarks.
"""
