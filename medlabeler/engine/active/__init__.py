"""Active learning: per-sample uncertainty scores (expensive, written to the store) and
strategies that rank stored scores to choose what the clinician labels next (cheap).

Submodules: `uncertainty` (scores from probabilities), `aggregate` (voxel maps -> one number per
slice / volume), `strategies` (ranking), `scoring` (running a model over the pool),
`simulate` (the simulated-clinician benchmark). Import them directly; this package imports nothing
heavy.
"""
