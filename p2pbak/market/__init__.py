"""The hidden market, pure math: no I/O, no asyncio. Equation numbers are the paper's."""
