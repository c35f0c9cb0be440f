"""The ``storeedge`` Tryton module: the ERP itself refuses a second document for one of our keys.

Installed into trytond through the ``trytond.modules`` entry point of this package (see
pyproject.toml) and activated by :mod:`cloud_bridge.tryton.server` with the other modules. It
adds to customer shipments, customer returns, internal shipments (a store's orders on the
distribution centre) and inventories:

- ``storeedge_key``: the idempotency key of the agent's command, unique in the database (an SQL
  unique index on SQLite and PostgreSQL alike), so a create repeated after a timeout or a crash
  is refused by the database, whatever the connector remembers;
- ``storeedge_receipts``: the POS receipts a summarised document covers, one per line, so an
  auditor can trace every unit back to the store's journal;
- ``stock.inventory.storeedge_count``: a count approved at the store, as differences per
  product, booked as one confirmed inventory in one transaction.

Its classes are listed in ``tryton.cfg`` and imported by trytond only, so importing
``cloud_bridge.tryton`` never needs trytond.
"""
