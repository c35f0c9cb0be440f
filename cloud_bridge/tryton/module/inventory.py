"""Stock counts approved at the store, booked as one confirmed inventory per key."""

from trytond.pool import Pool, PoolMeta
from trytond.rpc import RPC

from .shipment import _StoreedgeKeyed


class Inventory(_StoreedgeKeyed, metaclass=PoolMeta):
    __name__ = "stock.inventory"

    _storeedge_steps = ("confirm",)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.__rpc__.update({"storeedge_count": RPC(readonly=False)})

    @classmethod
    def storeedge_count(cls, values, deltas):
        """Create one inventory (``values``: location, company, storeedge_key) with a line per
        product id in ``deltas`` (a dict: product id -> units) counted at the quantity the ERP
        expects there plus that many, and confirm it, all in this one transaction; return its
        id. A delta, not a quantity: sales the store made that the ERP has not yet booked move
        the expectation, not the correction. A key booked before is refused by the index."""
        pool = Pool()
        Date = pool.get("ir.date")
        Line = pool.get("stock.inventory.line")
        values = dict(values, date=Date.today(),
                      lines=[("create", [{"product": int(p)} for p in deltas])])
        inventory, = cls.create([values])  # expected quantities are filled in on create
        lines = list(inventory.lines)
        for line in lines:
            line.quantity = (line.expected_quantity or 0) + deltas[str(line.product.id)]
        Line.save(lines)
        cls.confirm([inventory])
        return inventory.id
