"""Cluster mode: several ``watui serve`` nodes over one PostgreSQL database and one Redis.

See docs/cluster.md. Each concern has its own module:

- ``leases``: which node runs which session (leases with fencing tokens, per-owner limits);
- ``nodes``: the nodes table (heartbeats, capacity, the URL other nodes route to);
- ``fanout``: events and session snapshots between nodes (Redis Streams, with catch-up from
  PostgreSQL when a node missed part of the stream or Redis is down);
- ``routing``: a call for a session that runs on another node is answered by that node.
"""
