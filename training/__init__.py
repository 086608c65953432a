"""Scriptorium's offline half: config-driven training, evaluation, benchmarking and data preparation.

Entry point: `python -m training <command>` (see training/cli.py). Builds model directories in the format of
`lm.checkpoint`, which the web app serves as they are.
"""
