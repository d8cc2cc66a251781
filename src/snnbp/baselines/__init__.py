"""Reference implementations that snnbp is measured against (not used by the engines).

``bptt``: a plain-PyTorch surrogate-gradient BPTT trainer of the same fully connected LIF network,
written the way snnTorch / Norse users write it (a Python loop over time steps that keeps the
autograd graph). ``snnbp bench`` times it side by side with the event engine.
"""
