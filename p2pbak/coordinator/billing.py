"""Billing (paper §2.4, Table 1): who pays the bank and whom the bank pays, and when.

* backup: the pack owner pays q_B per GB when the pack is committed; each supplier is paid
  p_D per GB it downloaded when it hands in the store ticket it honoured (a receipt); a
  store of someone else's fragment (repair, testing) is upkeep, booked without a consumer;
* storage: a periodic job charges owners q_S per GB-day of their packs and pays holders
  p_S per effective GB-day (bytes × availability × 2/3);
* retrieval: a fetch receipt charges the fragment's owner q_R per GB and pays the supplier
  p_U per GB; a fetch of someone else's fragment (repair, testing) is paid by the bank;
* repair and testing: `pay_upkeep` pays both bandwidths from the bank;
* relaying: a receipt whose ticket names a relay (`via`, the peer relaying for its `to` when
  the ticket was signed) also pays that relay p_U + p_D per GB carried, from the bank as
  upkeep, in the receipt's own ledger transaction: the proof that pays the supplier (the
  commit, the receiver's acknowledgement) is the proof the relay carried the bytes; unless
  the holder marks the receipt direct (`tickets.DIRECT`: it was served over a hole-punched
  link, the relay carried nothing).

A receipt pays only for a ticket this coordinator signed, naming the peer that hands it in,
only for work proven (coordinator.evidence: a committed placement, the receiver's
acknowledgement; until then it waits as a claim) and only once (the ledger's unique `ref`).
Amounts come from p2pbak.market.bank's rules, at q = Aᵀp for the overheads the price job
measured (market.prices.measured_overheads).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from p2pbak.coordinator import evidence
from p2pbak.coordinator.accounts import check_accounts, refresh_alerts
from p2pbak.coordinator.tariff import current_prices
from p2pbak.errors import ReceiptRefused
from p2pbak.market import bank as rules
from p2pbak.net import tickets
from p2pbak.net.relay import COORDINATOR_ID
from p2pbak.store.db import bank, claims, storage
from p2pbak.store.db.bank import user_account
from p2pbak.units import DAY

if TYPE_CHECKING:
    from p2pbak.coordinator.service import Coordinator
    from p2pbak.store.db.tasks import Task

RECEIPT_MAX_AGE = 7 * DAY  # a receipt for a ticket expired longer ago is refused
STORAGE_MARK = "bank_storage_accrued_at"


# -- backup -------------------------------------------------------------------------------

async def charge_backup(coord: Coordinator, user: str, pack_id: str, length: int) -> bool:
    """Op. 1, consumer side: the owner of a newly committed pack pays q_B per GB."""
    _, table = await current_prices(coord)
    postings = rules.backup_postings(user_account(user), length, [], table)
    booked = await bank.book(coord.db, kind="backup", postings=postings,
                             ref=f"pack:{user}:{pack_id}", user=user, quantity=length)
    await refresh_alerts(coord, [user])
    return booked


# -- receipts -----------------------------------------------------------------------------

def relay_ref(receipt_ref: str) -> str:
    """The ledger ref of a relay's pay: its receipt's, so one proof pays the relay once."""
    return claims.RELAY_PREFIX + receipt_ref


class Pending:
    """A receipt kept as a claim until its evidence arrives (see coordinator.evidence)."""


def verify_receipt(coord: Coordinator, peer_id: str, wire: str) -> tickets.Ticket:
    """The ticket, if this coordinator signed it for `peer_id` and it is recent enough."""
    try:
        claimed = tickets.unverified(wire)
        t = tickets.verify(coord.signing_key.public_key(), wire, op=str(claimed.get("op")),
                           fragment=str(claimed.get("fragment")), to=peer_id, now=0)
    except tickets.TicketError as exc:
        raise ReceiptRefused(str(exc)) from None
    if t.op not in tickets.PAID_OPS:
        raise ReceiptRefused(f"a {t.op} ticket moves no data: nothing to pay")
    if t.exp < time.time() - RECEIPT_MAX_AGE:
        raise ReceiptRefused("ticket expired more than 7 days ago: too old to pay")
    return t


@dataclass(frozen=True)
class _Entry:
    """One receipt's booking, worked out before the ledger transaction."""

    ref: str
    ticket: tickets.Ticket
    evidence: str
    kind: str
    user: str | None
    size: int
    postings: list[rules.Posting]
    paid: int  # µc to the supplier
    relay: list[rules.Posting]  # the relay's pay for carrying it (none: direct)
    relay_user: str | None = None  # the relay's owner


def _relay_pay(t: tickets.Ticket, owners: dict[str, str],
               table: rules.PriceTable) -> tuple[list[rules.Posting], str | None]:
    """The pay of the relay the ticket names, if a peer relay (the coordinator's own relay
    has no account): booked with the receipt, so only work proven by the other side pays."""
    relay_user = owners.get(t.via) if t.via and t.via != COORDINATOR_ID else None
    if relay_user is None:
        return [], None
    return rules.relay_postings(user_account(relay_user), t.size, table), relay_user


def _entry(supplier: str, owners: dict[str, str], t: tickets.Ticket, table: rules.PriceTable,
           proof: tuple[str, str], known: claims.Facts, direct: bool) -> _Entry:
    consumer = owners.get(t.from_)
    kind, user = "store", consumer
    placed_by = known.owners.get(t.fragment, set())
    if t.op == "store":  # the owner paid q_B at commit; the bank pays the download
        postings = rules.upkeep_postings([(user_account(supplier), 0, t.size)], table)
        # a store the backup charge paid for: the consumer's own pack, committed or granted
        if consumer and consumer not in placed_by | known.granted.get(t.fragment, set()):
            user = None  # repair or testing: upkeep, which q_S funds (bank.UPKEEP_KINDS)
    elif consumer and consumer in placed_by:
        kind = "retrieval"  # op. 3: the owner fetches its own fragment and pays q_R
        postings = rules.retrieval_postings(user_account(consumer), t.size,
                                            [(user_account(supplier), t.size)], table)
    else:  # someone else's fragment: repair or testing, upkeep paid by the bank
        kind, user = "fetch", None
        postings = rules.upkeep_postings([(user_account(supplier), t.size, 0)], table)
    paid = sum(p.amount for p in postings if p.account == user_account(supplier))
    # a holder's "direct" only withholds the relay's pay: it can make no one richer
    return _Entry(proof[1], t, proof[0], kind, user, t.size, postings, paid,
                  *(([], None) if direct else _relay_pay(t, owners, table)))


async def settle_receipts(coord: Coordinator, peer_id: str,
                          wires: Sequence[str]
                          ) -> list[tuple[bool, int] | ReceiptRefused | Pending]:
    """Pay `peer_id` for the tickets it honoured and whose work is proven, all in one ledger
    transaction. Per wire: (booked now, µc paid), (False, 0) when paid before, Pending
    while the evidence has not arrived, or the refusal."""
    out: list[tuple[bool, int] | ReceiptRefused | Pending] = []
    checked: list[tickets.Ticket | ReceiptRefused | Pending] = []
    proofs: dict[str, tuple[str, str]] = {}
    verified: list[tickets.Ticket | ReceiptRefused] = []
    direct: set[str] = set()  # ticket ids served not through their relay (tickets.DIRECT)
    for wire in wires:
        plain, punched = tickets.split_receipt(wire)
        try:
            verified.append(t := verify_receipt(coord, peer_id, plain))
        except ReceiptRefused as exc:
            verified.append(exc)
            continue
        if punched:
            direct.add(t.id)
    known = await evidence.facts(coord, peer_id, [
        t for t in verified if isinstance(t, tickets.Ticket)])
    for wire, t in zip(wires, verified, strict=True):
        if isinstance(t, ReceiptRefused):
            checked.append(t)
            continue
        proof = evidence.backing(t, known)
        if proof is not None:
            proofs[t.id] = proof
            checked.append(t)
        elif evidence.claim_alive(t):
            await evidence.keep(coord, t, wire)
            checked.append(Pending())
        else:
            checked.append(ReceiptRefused(
                "no committed placement or receiver's acknowledgement backs this ticket "
                "and it has expired: nothing to pay"))
    owners = await bank.peer_owners(coord.db, [peer_id] + [
        m for t in checked if isinstance(t, tickets.Ticket) for m in (t.from_, t.via) if m])
    supplier = owners.get(peer_id)
    _, table = await current_prices(coord)
    entries: list[_Entry | ReceiptRefused | Pending] = []
    for t in checked:
        if not isinstance(t, tickets.Ticket):
            entries.append(t)
        elif supplier is None:
            entries.append(ReceiptRefused("this peer is unknown to the bank"))
        else:
            entries.append(_entry(supplier, owners, t, table, proofs[t.id], known,
                                  t.id in direct))
    paying = [e for e in entries if isinstance(e, _Entry)]
    async with coord.db.transaction() as conn:  # a few statements for the whole batch
        booked = await bank.book_each_in(conn, [
            (e.kind, bank.Booking(e.ref, e.user, e.size, bank.movements(e.postings)))
            for e in paying])
        # same transaction, ref derived: a relay is paid once, with its receipt
        await bank.book_each_in(conn, [
            ("relay", bank.Booking(relay_ref(e.ref), None, e.size, bank.movements(e.relay)))
            for e, new in zip(paying, booked, strict=True) if new and e.relay])
        await claims.settle_all_in(conn, [(e.ref, e.ticket.id, peer_id, e.ticket.fragment,
                                           e.evidence) for e in paying])
    flags = iter(booked)
    for e in entries:
        if isinstance(e, _Entry):
            new = next(flags)
            out.append((new, e.paid if new else 0))
        else:
            out.append(e)
    touched = {supplier} | {u for e in entries if isinstance(e, _Entry)
                            for u in (e.user, e.relay_user)}
    # a retrieval spends, a supplier earns
    await refresh_alerts(coord, sorted(u for u in touched if u))
    return out


async def settle_receipt(coord: Coordinator, peer_id: str, wire: str) -> tuple[bool, int]:
    """One receipt (see settle_receipts); raises ReceiptRefused."""
    result = (await settle_receipts(coord, peer_id, [wire]))[0]
    if isinstance(result, ReceiptRefused):
        raise result
    return (False, 0) if isinstance(result, Pending) else result


async def pay_upkeep(coord: Coordinator, transfers: Sequence[tuple[str, int, int]],
                     ref: str) -> bool:
    """Ops. 4-5 (repair, testing): the bank pays each peer (peer id, bytes uploaded, bytes
    downloaded) for both bandwidths; once per `ref` (e.g. 'repair:<task id>')."""
    owners = await bank.peer_owners(coord.db, [p for p, _, _ in transfers])
    _, table = await current_prices(coord)
    postings = rules.upkeep_postings(
        [(user_account(owners[p]), up, down) for p, up, down in transfers if p in owners], table)
    return await bank.book(coord.db, kind="upkeep", postings=postings, ref=ref,
                           quantity=sum(up + down for _, up, down in transfers))


# -- storage ------------------------------------------------------------------------------

async def accrue_storage(coord: Coordinator) -> int:
    """Op. 2 since the last run: owners pay per GB-day stored, holders are paid per
    effective GB-day held. Returns the seconds accrued (0 on the first run).

    Set-based: two reads of the kept totals (one row per user, one per holding peer), one
    linear pass of the exact integer rules (market.bank.storage_charge per owner,
    storage_pay per peer on all it holds), and `storage.book_in` books it in a handful of
    statements: one ledger transaction per owner (owner → bank), and one for the run
    paying each holder's account the sum over its peers (bank → holder)."""
    db = coord.db
    t = int(time.time())
    last = await bank.marker(db, STORAGE_MARK)
    seconds = 0 if last is None else t - last
    if last is not None and seconds <= 0:
        return 0
    charges: list[tuple[str, int, int]] = []
    pays: list[tuple[str, int]] = []
    if seconds:
        _, table = await current_prices(coord)
        data, held = await storage.rows(db)
        charges, pays = _storage_amounts(data, held, seconds, table)
    async with db.transaction() as conn:
        await storage.book_in(conn, t, charges, pays)
        await bank.set_marker_in(conn, STORAGE_MARK, t)
    return seconds


def _storage_amounts(data: Sequence[tuple[str, int]], held: Sequence[tuple[str, int, float]],
                     seconds: int, table: rules.PriceTable
                     ) -> tuple[list[tuple[str, int, int]], list[tuple[str, int]]]:
    """(user, µc charged, byte-seconds) per owner and (account, µc paid) per holder's
    account. A peer is paid for all it holds at once (`held`: its owner, bytes,
    availability), rounded down once, not once per owner whose fragments it holds."""
    charges = [(user, rules.storage_charge(size, seconds, table), size * seconds)
               for user, size in data]
    paid: dict[str, int] = {}
    for holder, size, availability in held:
        account = user_account(holder)
        paid[account] = paid.get(account, 0) + rules.storage_pay(size, seconds, availability,
                                                                 table)
    return charges, sorted((a, amount) for a, amount in paid.items() if amount)


async def billing_job(coord: Coordinator) -> None:
    """The periodic bank job: accrue storage, then re-check every account's alerts."""
    await accrue_storage(coord)
    await check_accounts(coord)


async def pay_worker(coord: Coordinator, task: Task, worker: str, uploaded: int,
                     downloaded: int) -> None:
    """Table 1: repair and testing pay both bandwidths; the bank pays the worker once per
    task (the peers it fetched from and stored on hand in their tickets as receipts)."""
    if uploaded or downloaded:
        await pay_upkeep(coord, [(worker, uploaded, downloaded)], f"task:{task.id}")


async def settle_pending(coord: Coordinator, fragment_ids: Sequence[str]) -> int:
    """Pay the waiting claims on these fragments that their evidence now backs (µc)."""
    by_peer: dict[str, list[str]] = {}
    for peer_id, wire in await claims.pending(coord.db, fragment_ids):
        by_peer.setdefault(peer_id, []).append(wire)
    paid = 0
    for peer_id, wires in by_peer.items():
        for result in await settle_receipts(coord, peer_id, wires):
            if isinstance(result, tuple):
                paid += result[1]
    return paid
