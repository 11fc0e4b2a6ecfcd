"""Figures made from result rows: matplotlib only, never a simulation."""

import matplotlib

matplotlib.use("Agg")
