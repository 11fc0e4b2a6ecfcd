"""The model of duroxide on PostgreSQL: runtime profiles, the scenario, the what-ifs, the provider
(queues, instance locks, one stored procedure per call), the dispatchers, the client, the
workloads and the wiring that builds one simulated world from a scenario."""
