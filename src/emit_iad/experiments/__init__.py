"""Experiments: runs of the trainers and the evaluation together (EMIT's ablation), above
:mod:`emit_iad.train` and :mod:`emit_iad.evaluate`, which import nothing from here."""
