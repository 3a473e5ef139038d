"""Reading a domain's proof-of-control TXT record from DNS (dnspython's asyncio resolver).

:class:`TxtLookup` asks the system's resolvers, or the name servers it is given (the
tests run their own on loopback). :func:`check` says whether the account's challenge
(:mod:`permalink.domains`) is published, and never raises for what DNS answers: a missing
name, no TXT record and a server that does not answer each come back as a sentence.
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from permalink.domains import DomainProof


@dataclass(frozen=True, slots=True)
class Checked:
    """What the lookup found: ``proved``, or ``problem`` for the settings page."""

    proved: bool
    problem: str = ""


class TxtLookup:
    """TXT records of a name, from the given name servers (default: the system's)."""

    def __init__(
        self, nameservers: tuple[str, ...] = (), *, port: int = 53, timeout: float = 5.0
    ) -> None:
        self._nameservers = nameservers
        self._port = port
        self._timeout = timeout

    def _resolver(self) -> dns.asyncresolver.Resolver:
        if not self._nameservers:
            resolver = dns.asyncresolver.Resolver()
        else:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = list(self._nameservers)
            resolver.port = self._port
        resolver.lifetime = self._timeout
        return resolver

    async def texts(self, name: str) -> list[str]:
        """Every TXT string at ``name`` (character-strings of a record joined)."""
        answer = await self._resolver().resolve(name, "TXT", search=False)
        found: list[str] = []
        for record in answer:
            found.append(b"".join(record.strings).decode("utf-8", errors="replace"))
        return found


async def check(lookup: TxtLookup, proof: DomainProof) -> Checked:
    """Whether ``proof``'s record is published with its token."""
    name = proof.record_name
    try:
        texts = await lookup.texts(name)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return Checked(False, f"DNS has no TXT record at {name} yet")
    except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.LifetimeTimeout):
        return Checked(False, f"DNS did not answer for {name}; try again in a few minutes")
    except dns.exception.DNSException as error:
        return Checked(False, f"DNS lookup of {name} failed ({type(error).__name__})")
    if proof.record_value in (text.strip() for text in texts):
        return Checked(True)
    return Checked(False, f"the TXT record at {name} does not hold {proof.record_value} yet")


__all__ = ["Checked", "TxtLookup", "check"]
