"""The duroxide runtime on its PostgreSQL provider, and the workloads that drive it, wired from
the generic blocks in `sim`."""
