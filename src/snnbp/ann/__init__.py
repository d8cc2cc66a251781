"""Conventional (non-spiking) baselines trained on the same data as the SNNs (``model.kind = "ann"``).

features.py: the dense inputs a conventional network sees (pixel intensities, event counts);
network.py:  the MLP / CNN of a preset's shape and its multiply-accumulates; training lives in
train/ann_trainer.py, operation counts in metrics/operations.py.
"""
