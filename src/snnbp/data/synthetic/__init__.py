"""Synthetic N-MNIST: MNIST digits turned into event recordings by simulating how N-MNIST was recorded.

- ``simulator``: the scene, the pixels and the sensor noise, i.e. what makes one sample's events
  (``synthesize_sample``, ``SynthParams``, ``sample_rng``; numba).
- ``writer``: ``generate_synthetic_nmnist``, which writes a whole dataset in parallel in the N-MNIST
  layout, and the ``SYNTHETIC.json`` marker helpers (``read_marker``).
"""
