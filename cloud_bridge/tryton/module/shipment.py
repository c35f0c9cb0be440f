"""Customer shipments and returns with storeedge's unique document key."""

from trytond.model import Unique, fields
from trytond.pool import PoolMeta
from trytond.rpc import RPC

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
        cls.__rpc__.update({"storeedge_book": RPC(readonly=False)})

    @classmethod
    def storeedge_book(cls, vlist):
        """Create documents and take them to done in this one transaction; return their ids.

        All or nothing: a key already booked is refused by the unique index and nothing of the
        call stays, so a document is never left half way by this call.
        """
        ids = [r.id for r in cls.create(vlist)]
        for step in cls._storeedge_steps:
            # browsed afresh for each step: a transition filters on the state it reads
            getattr(cls, step)(cls.browse(ids))
        return ids

    @classmethod
    def copy(cls, records, default=None):
        # a copy is a new document: it must not carry (and collide on) the original's key
        default = dict(default) if default else {}
        default.setdefault("storeedge_key", None)
        default.setdefault("storeedge_receipts", None)
        return super().copy(records, default=default)


class ShipmentOut(_StoreedgeKeyed, metaclass=PoolMeta):
    __name__ = "stock.shipment.out"

    # the goods left the shelves: forced assignment, then packed and done
    _storeedge_steps = ("wait", "assign_force", "pack", "do")


class ShipmentOutReturn(_StoreedgeKeyed, metaclass=PoolMeta):
    __name__ = "stock.shipment.out.return"

    # received straight into storage: receiving also does them
    _storeedge_steps = ("receive",)
