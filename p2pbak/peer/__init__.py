"""The peer agent: fragment server, tasks, receipts, delete lists."""
