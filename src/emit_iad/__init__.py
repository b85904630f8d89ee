"""emit-iad: EMIT's difficulty-aware GRPO for industrial anomaly detection, as a Kedro workflow.

The library under this package is plain Python/torch and never imports Kedro; only
``pipelines/``, ``pipeline_registry.py``, ``settings.py``, ``hooks.py``, ``dvc_params.py`` (DVC's
view of the Kedro parameters) and ``kedro_io/`` do.
"""

__version__ = "0.1.0"
