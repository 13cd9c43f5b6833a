"""A gateway of several worker processes serving one port (``mustcheck serve --workers N``).

:mod:`.supervisor` holds what is the gateway's alone (the data directory's lock, the port, the
embedded audit log and its writer, the published audit heads) and runs N workers (:mod:`.worker`),
each a whole gateway server on the same port (``SO_REUSEPORT``: the kernel spreads connections).
:mod:`.ports` keeps the port the gateway's, :mod:`.limits` makes a caller's rate limit one across
the workers, :mod:`.metrics` makes one Prometheus scrape show the whole gateway.
"""
