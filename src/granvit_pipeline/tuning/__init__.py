"""Optuna tuning of the training stages (no Kedro imports).

- `config`: `TuneConfig` (``params:tune``): search space, study, pruner, objective budget
- `space`: draw a trial's values, apply them to stage parameters, write the tuned parameters
- `study`: storages (SQLite/PostgreSQL with heartbeats, JournalStorage), pruners, one worker
- `pruning`: `PruningCallback` (a `TrainCallback`: intermediate values, prune -> stop)
- `tracking`: one nested MLflow run per trial

Imports nothing heavy at import time (``worker.entry`` imports `pruning`); import the
submodules you need.
"""
