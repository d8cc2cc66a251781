"""`snnbp bench`: speed and memory of the engines against their baselines, ratios from one run.

    specs.py          what is measured: the measurement table, groups, sizes, ratios
    workloads.py      one measurement in this process -> one JSON record (networks built through the
                      same config path as training)
    bptt_baseline.py  the plain-PyTorch surrogate-gradient BPTT baseline
    harness.py        runs every measurement in a fresh process, aggregates, writes the table; the CLI
"""
