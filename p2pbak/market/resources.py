"""Resources supplied and services consumed (§2.5, Table 2), as small vectors.

Units (per day, the market's clock): space in effective GB held (GB-days per day),
upload and download bandwidth in GB transferred; backup and retrieval in GB moved,
storage in GB held. The same types carry prices (credits per unit).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Resources:
    """A vector over the supplied resources (S space, U upload, D download)."""

    space: float
    upload: float
    download: float

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.space, self.upload, self.download)

    def dot(self, other: Resources) -> float:
        return self.space * other.space + self.upload * other.upload + \
            self.download * other.download

    def scale(self, factor: float) -> Resources:
        return Resources(self.space * factor, self.upload * factor, self.download * factor)

    def to_dict(self) -> dict[str, float]:
        return {"space": self.space, "upload": self.upload, "download": self.download}

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> Resources:
        return cls(float(data["space"]), float(data["upload"]), float(data["download"]))


@dataclass(frozen=True)
class Services:
    """A vector over the consumed services (B backup, S storage, R retrieval)."""

    backup: float
    storage: float
    retrieval: float

    def as_tuple(self) -> tuple[float, float, float]:
        return (self.backup, self.storage, self.retrieval)

    def dot(self, other: Services) -> float:
        return self.backup * other.backup + self.storage * other.storage + \
            self.retrieval * other.retrieval

    def scale(self, factor: float) -> Services:
        return Services(self.backup * factor, self.storage * factor, self.retrieval * factor)

    def to_dict(self) -> dict[str, float]:
        return {"backup": self.backup, "storage": self.storage, "retrieval": self.retrieval}


# Price vectors: p over resources (p_S fixed at 1, §5), q over services.
ResourcePrices = Resources
ServicePrices = Services

def prices(upload: float, download: float) -> Resources:
    """p = (1, p_U, p_D): space is the numeraire (§5, homogeneity of degree zero)."""
    return Resources(1.0, upload, download)
