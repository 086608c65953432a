"""`python -m training sweep`: many training runs of one config over a grid or random ranges of its keys, each in its
own model directory, compared on their validation text (space.py: what to try; manifest.py: the sweep on disk;
runner.py: running the trials, one device or one process per GPU; report.py: the table, plot and promotion)."""
