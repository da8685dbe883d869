"""The store behind watui, as one protocol (:mod:`watui.stores.base`) with two backends:
SQLite (:mod:`watui.stores.sqlite`, one process, the default) and PostgreSQL
(:mod:`watui.stores.postgres`, shared by the nodes of a cluster)."""
