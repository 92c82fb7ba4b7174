"""Coordinator routes of the market: receipts, the caller's account, prices, supply caps."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field

from p2pbak.coordinator import accounts, billing, evidence, market, tariff
from p2pbak.coordinator import prices as market_prices
from p2pbak.coordinator.http.common import caller, coordinator, ok
from p2pbak.net.validate import Body, CapsBody, parse, query_int

routes = web.RouteTableDef()

MAX_RECEIPTS = 1000
Wire = Annotated[str, Field(min_length=1, max_length=4096)]


class ReceiptsBody(Body):
    receipts: Annotated[list[Wire], Field(min_length=1, max_length=MAX_RECEIPTS)]


@routes.post("/v1/receipts")
async def receipts(request: web.Request) -> web.Response:
    """A peer hands in the tickets it honoured; each is paid once, to the peer it names."""
    coord, machine = await caller(request)
    body = await parse(request, ReceiptsBody)
    paid = accepted = replayed = pending = 0
    refused = []
    results = await billing.settle_receipts(coord, machine.id, body.receipts)
    for i, result in enumerate(results):
        if isinstance(result, billing.ReceiptRefused):
            refused.append({"index": i, "error": str(result)})
            continue
        if isinstance(result, billing.Pending):  # paid when its evidence arrives
            pending += 1
            continue
        booked, amount = result
        accepted += booked
        replayed += not booked
        paid += amount
    return web.json_response({"paid": paid, "accepted": accepted, "replayed": replayed,
                              "pending": pending, "refused": refused})


class AcksBody(Body):
    acks: Annotated[list[Wire], Field(min_length=1, max_length=MAX_RECEIPTS)]


@routes.post("/v1/acks")
async def acks(request: web.Request) -> web.Response:
    """A receiver acknowledges the fetches it got (bytes matching their ids), so their
    suppliers' receipts pay (coordinator.evidence)."""
    coord, machine = await caller(request)
    body = await parse(request, AcksBody)
    refused, fragments = [], []
    for i, result in enumerate(await evidence.acknowledge_all(coord, machine.id, body.acks)):
        if isinstance(result, evidence.AckRefused):
            refused.append({"index": i, "error": str(result)})
        else:
            fragments.append(result.fragment)
    paid = await billing.settle_pending(coord, fragments)
    return web.json_response({"acknowledged": len(fragments), "paid": paid,
                              "refused": refused})


@routes.get("/v1/account")
async def account(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    return web.json_response({"user": machine.user,
                              **await accounts.account_summary(coord, machine.user)})


@routes.get("/v1/prices")
async def price_history(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 100, 1, 10_000)
    coord = coordinator(request)
    rows = await market.price_history(coord, limit)
    p, table = await tariff.current_prices(coord)
    return web.json_response({"current": {"p": p.to_dict(), "micro": table.to_dict()},
                              "history": [r.to_dict() for r in rows]})


@routes.put("/v1/supply")
async def set_supply(request: web.Request) -> web.Response:
    """New caps for the caller's peer (the agent also re-announces them from its config)."""
    coord, machine = await caller(request)
    body = await parse(request, CapsBody)
    known = await market.set_supply_caps(coord, machine.id, body.space, body.upload,
                                         body.download)
    return ok(peer_known=known)


@routes.post("/v1/supply/quote")
async def quote(request: web.Request) -> web.Response:
    coord, machine = await caller(request)
    body = await parse(request, CapsBody)
    answer = await market_prices.supply_quote(coord, machine.user, machine.id, body.space,
                                              body.upload, body.download)
    answer["account"] = (await accounts.account_state(coord, machine.user)).to_dict()
    return web.json_response(answer)
