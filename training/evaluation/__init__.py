"""How good a model is: `evaluate` (scores, calibration, diversity), `benchmark` (models side by side), the
evaluation maths (metrics.py), plots, the baseline ladder (baselines.py, kneser_ney.py, ladder.py) and dynamic
evaluation (dynamic_eval.py)."""
