"""storeedge: the shared vocabulary of the store edge (events, errors, ids, units).

This package imports nothing else of ours; every other package may import it.
"""
