"""Customer shipments and returns with storeedge's unique document key."""

from trytond.model import Unique, fields
from trytond.pool import PoolMeta

KEY_UNIQUE_MESSAGE = "storeedge.msg_storeedge_key_unique"


class _StoreedgeKeyed:
    storeedge_key = fields.Char(
        "Storeedge Key", strip=False,
        help="The store agent's idempotency key: the database refuses a second document "
        "with the same key.")
    storeedge_receipts = fields.Text(
        "Storeedge Receipts",
        help="The POS receipts this document sums up, one per line.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ("storeedge_key_unique", Unique(t, t.storeedge_key), KEY_UNIQUE_MESSAGE),
        ]

    @classmethod
    def copy(cls, records, default=None):
        # a copy is a new document: it must not carry (and collide on) the original's key
        default = dict(default) if default else {}
        default.setdefault("storeedge_key", None)
        default.setdefault("storeedge_receipts", None)
        return super().copy(records, default=default)


class ShipmentOut(_StoreedgeKeyed, metaclass=PoolMeta):
    __name__ = "stock.shipment.out"


class ShipmentOutReturn(_StoreedgeKeyed, metaclass=PoolMeta):
    __name__ = "stock.shipment.out.return"
