"""p2pbak: peer-to-peer backup with a hidden market (Seuken et al., NetEcon'09)."""

__version__ = "0.1.0"
