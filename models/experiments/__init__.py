"""Experiments on the model: replications and their summary, what-if comparisons, sweeps and their
executors, capacity searches, the speed benchmark and the seed analysis's report."""
