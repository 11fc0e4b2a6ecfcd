"""Figures made from result rows: matplotlib only, never a simulation. Each builds a
`matplotlib.figure.Figure` without pyplot, so importing durosim leaves matplotlib's backend
alone."""
