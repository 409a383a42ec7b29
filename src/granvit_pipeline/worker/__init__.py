"""The training worker: the process that ``training.launcher`` starts on every rank.

``python -m granvit_pipeline.worker.entry --run-config <output_dir>/run_config.json`` runs
``training.engine.train`` with the MLflow (``tracking``) and Optuna (``tuning``) callbacks that
the environment asks for. Its own package because it composes those three: ``tracking`` and
``tuning`` build on ``training``, so the composition cannot live inside ``training``.
"""
