"""The local settings page of §3.1 (Fig. 1): three sliders and the resource-balance pie.

May use market/, store/, net/ and the client's config; never the coordinator or the peer.
"""
