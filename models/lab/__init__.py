"""The real-runtime lab behind `durosim record`: a throwaway PostgreSQL cluster, a delay proxy that
adds the RTT, the real duroxide runtime and the workload driver that measures it."""
