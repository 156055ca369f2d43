"""The reference pool: N models retrained from scratch on the retain set, their outputs cached once.

folder: the fingerprinted folder and its entries; claims: who builds what; build: the builders.
"""

from challenge.pool.build import build, summary, write_stand_in
from challenge.pool.claims import Claim, claims
from challenge.pool.folder import Pool, PoolEntry, make_entry, read_entry

__all__ = ["Claim", "Pool", "PoolEntry", "build", "claims", "make_entry", "read_entry", "summary", "write_stand_in"]
