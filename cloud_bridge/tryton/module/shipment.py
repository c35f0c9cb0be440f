"""Customer shipments and returns with storeedge's unique document key."""

from trytond.exceptions import UserError
from trytond.i18n import gettext
from trytond.model import Unique, fields
from trytond.pool import Pool, PoolMeta
from trytond.rpc import RPC
from trytond.transaction import Transaction

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


class ShipmentInternal(_StoreedgeKeyed, metaclass=PoolMeta):
    __name__ = "stock.shipment.internal"

    # a store's order on the distribution centre: requested, and the centre takes it from there
    # (assigned, packed and shipped by its staff); the store receives it to done
    _storeedge_steps = ("wait",)
    # what the goods that arrived did of the centre's part, if it had not booked it
    _storeedge_to_shipped = {"waiting": ("assign_force", "pack", "ship"),
                             "assigned": ("pack", "ship"), "packed": ("ship",), "shipped": ()}

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.__rpc__.update({"storeedge_receive": RPC(readonly=False)})

    @classmethod
    def storeedge_receive(cls, key, received):
        """Receive the order keyed ``key`` in this one transaction: each incoming move takes
        the units that arrived (``received``: product code -> units; an ordered product not in
        it arrived not at all) and the shipment goes to done, shipped first where the centre
        had not booked that. What left the centre and did not arrive stays in transit, for
        the chain to find. A shipment already done is left as it is. Returns its id."""
        pool = Pool()
        Move = pool.get("stock.move")
        shipments = cls.search([("storeedge_key", "=", key)], limit=1)
        if not shipments:
            raise UserError(gettext("storeedge.msg_storeedge_no_order", key=key))
        (shipment,) = shipments
        if shipment.state == "done":
            return shipment.id
        if shipment.state not in cls._storeedge_to_shipped:
            raise UserError(gettext("storeedge.msg_storeedge_order_state", key=key,
                                    state=shipment.state))
        for step in cls._storeedge_to_shipped[shipment.state]:
            getattr(cls, step)(cls.browse([shipment.id]))
        (shipment,) = cls.browse([shipment.id])
        moves = list(shipment.incoming_moves)
        for move in moves:
            move.quantity = float(received.get(move.product.code, 0))
        Move.save(moves)
        # a short or over delivery is what this records, not a mistake to warn about
        with Transaction().set_context(_skip_warnings=True):
            cls.do(cls.browse([shipment.id]))
        return shipment.id
