"""The real engine: one neonize (whatsmeow) client per watui session.

Where each concern lives, from the top down:

* :mod:`.engine`: :class:`NeonizeEngine`, which makes the sessions and answers for their
  auth state (the engine protocol's ``Engine``).
* :mod:`.session`: :class:`NeonizeSession`, one watui session as a series of connection
  attempts on one whatsmeow device (the protocol's ``EngineSession``).
* :mod:`.client`: the calls made on a connected neonize client (log out, a pairing code,
  send a message of any type).
* :mod:`.run`: one attempt, i.e. one blocking ``Neonize()`` call on a thread of its own: the
  events coming in, its watchdog, its safe teardown; and how neonize 0.5.2 behaves, which
  shapes all of it.
* :mod:`.devices`: where a session's whatsmeow device is kept, an SQLite file of its own or
  (cluster mode) the cluster's PostgreSQL database.
* :mod:`.mapping`: neonize's protobuf events → the engine protocol's facts.
* :mod:`.media`: chat messages of every type both ways (image, video, audio, voice,
  document, sticker, location, contact): what a received one says, where its downloaded bytes
  go, and the proto an outgoing one is sent as (its upload kept apart, so it is testable).
* :mod:`.relay`: each attempt's local proxy, chained to the session's own proxy (if any).
* :mod:`.go`: the Go library (loaded lazily), blocking calls on daemon threads, the lock
  around neonize's unlocked Go maps.

Names with a leading underscore are this package's own, shared between its modules; the
names below are the rest of watui's.
"""

from watui.engines.neonize.engine import NeonizeEngine
from watui.engines.neonize.run import NeonizeEngineError
from watui.engines.neonize.session import NeonizeSession

__all__ = ["NeonizeEngine", "NeonizeEngineError", "NeonizeSession"]
