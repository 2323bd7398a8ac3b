"""The engine: everything that reads, stores, learns or scores; no Qt, no display.

`workflows/` holds what a user runs end to end (train, pretrain, evaluate, predict, the learning
loop, scoring, the demo); `project/` a project's files in and out; the rest are the parts they
are built from (io, store, data, models, methods, ssl, semi, training, inference, active,
metrics, errors). Imports only go down these floors (import-linter contracts in pyproject.toml).
"""
