"""Several ``leadpipe run`` nodes on one drop folder, coordinated through PostgreSQL.

docs/cluster.md describes the whole of it. The modules, one concept each:

- ``records.py``   :class:`NodeStatus`: one node as the status page and ``leadpipe status``
                   show it (a value, JSON at the edges; no database code)
- ``db.py``        the cluster's tables and its own small connection pool (psycopg)
- ``registry.py``  the node registry: who runs, where, since when, last seen
- ``leases.py``    leases with fencing tokens: take, renew, check, release
- ``heartbeat.py`` the thread that renews the registry row and every held lease
- ``node.py``      :class:`ClusterNode`: this process as a node (composes the above)
- ``claims.py``    leases on drop-folder claims (what the intake asks of a cluster)
- ``exports.py``   leases on export jobs and windows; the windows written, recorded
- ``status.py``    the nodes read from the database for ``leadpipe status``

Nothing here is loaded with a SQLite ledger (one node, as before): psycopg is imported only by
``db.py``, and only the service of a PostgreSQL ledger opens it.
"""
