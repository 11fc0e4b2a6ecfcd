"""Generic discrete-event building blocks: links, a database server, a connection pool,
dispatcher loops, random streams, distributions, strict config loading, traces and statistics.

Nothing here knows about duroxide; `models` wires these blocks into the duroxide runtime.
"""
