"""What the console does to sessions: verbs on one or many, with the checks, questions and toasts.

The app hands every :class:`~watui.console.requests.RunVerb` here. A verb that cannot run is refused at
once with the reason (before any question); a session that is already being acted on is left
alone (``d y d y`` deletes once); several marked sessions get one question that says how many,
a progress line while they run, and one summary toast: done, refused, and why.

Attached to a server that cannot be reached, the view is stale (``LinkStatus.stale``): every
action is refused at once with "server unreachable", rather than judged on what the screen
showed when the link went down (a session stopped meanwhile still looks connected).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from watui.console.verbs import Verb, refusal
from watui.errors import WatuiError
from watui.machine import RUNNING, Status
from watui.models import Session
from watui.screens.confirm import ConfirmScreen
from watui.widgets.messages import BulkProgress
from watui.widgets.text import clean

if TYPE_CHECKING:
    from watui.app import WatuiApp

log = logging.getLogger(__name__)

BULK_BATCH = 100
"""Sessions acted on concurrently by a bulk action."""

QUESTIONS = {
    Verb.LOGOUT: ("Log out?", "Unlink {name} from its phone? Linking it again needs a new scan.", "Log out"),
    Verb.DELETE: ("Delete session?", "Delete {name}, its history and its auth data? This cannot be undone.",
                  "Delete"),
}

BULK_WARNINGS = {
    Verb.STOP: "Their links are kept; start them again with s.",
    Verb.RESTART: "Each is stopped, then started again.",
    Verb.START: "Sessions that were never linked show a QR code to scan.",
    Verb.LOGOUT: "Linking them again needs a new scan each.",
    Verb.DELETE: "Their history and auth data go too. This cannot be undone.",
}


@dataclass
class Outcome:
    """What a call came to: done, or refused with the service's words."""

    ok: bool
    reason: str = ""


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def hidden_note(hidden: int, total: int) -> str:
    """What the bulk question says of the sessions the filter hides."""
    if hidden == total:
        return "It is hidden by the filter." if total == 1 else "All of them are hidden by the filter."
    return f"{hidden} of them {'is' if hidden == 1 else 'are'} hidden by the filter."


def summary(verb: Verb, done: int, refused: Iterable[str]) -> tuple[str, str]:
    """The bulk toast: a title with the counts, a body with each reason and how often."""
    reasons = Counter(refused)
    n_refused = sum(reasons.values())
    title = f"{verb.label}: {done} done" + (f", {n_refused} refused" if n_refused else "")
    if not n_refused:
        return title, f"{verb.done} {plural(done, 'session')}."
    why = "; ".join(f"{reason} ({count})" for reason, count in reasons.most_common(5))
    more = len(reasons) - 5
    if more > 0:
        why += f"; {more} other reason{'s' if more != 1 else ''}"
    return title, f"{verb.done} {plural(done, 'session')}. Refused: {why}."


class SessionActions:
    """Runs verbs for the app: checks first, asks when it must, never twice at once per session."""

    def __init__(self, app: WatuiApp) -> None:
        self.app = app
        self.busy: dict[str, Verb] = {}
        """Sessions with a call in flight, and the verb: a second request for one is ignored."""
        self.pending = 0
        self.deleted: set[str] = set()
        """Deleted here, still on screen until the next refresh: nothing more to do to them."""

    # -- calls ------------------------------------------------------------------------

    async def call(self, label: str, call: Awaitable[Any]) -> Any:
        """Await a service call; a refusal becomes an error toast with the service's words."""
        outcome, result = await self.attempt(call)
        if not outcome.ok:
            self.app.notify(outcome.reason, title=f"{label} refused", severity="error", timeout=8, markup=False)
            return None
        return result

    def unreachable(self) -> str | None:
        """Attached, with the server out of reach: the refusal for any action (else ``None``)."""
        link = self.app.server_link
        if link is None or not link.stale:
            return None
        as_of = f"; the view shows it as of {link.as_of:%H:%M:%S} UTC" if link.as_of else ""
        return f"server unreachable{as_of}"

    def _refuse_unreachable(self, what: str) -> bool:
        why = self.unreachable()
        if why is None:
            return False
        self.app.notify(f"Cannot {what}: {why}.", title="Server unreachable", severity="error", timeout=6,
                        markup=False)
        return True

    async def attempt(self, call: Awaitable[Any]) -> tuple[Outcome, Any]:
        why = self.unreachable()
        if why is not None:
            if asyncio.iscoroutine(call):
                call.close()  # never sent
            return Outcome(False, why[0].upper() + why[1:]), None
        self.pending += 1
        try:
            return Outcome(True), await call
        except WatuiError as exc:
            return Outcome(False, exc.message), None
        except Exception as exc:  # an engine bug must not take the console down
            log.exception("a console action failed")
            return Outcome(False, f"{type(exc).__name__}: {exc}"), None
        finally:
            self.pending -= 1

    def _name(self, session_id: str) -> str:
        session = self.app.state.sessions.get(session_id)
        return repr(clean(session.name)) if session else session_id

    def _service_call(self, verb: Verb, session_id: str) -> Callable[[], Awaitable[Any]]:
        service = self.app.service
        calls: dict[Verb, Callable[[str], Awaitable[Any]]] = {
            Verb.START: service.start, Verb.STOP: service.stop, Verb.RESTART: service.restart,
            Verb.LOGOUT: service.logout, Verb.DELETE: service.delete,
        }
        if verb == Verb.RESTART_OR_START:
            session = self.app.state.sessions.get(session_id)
            running = session is not None and session.status in RUNNING
            return lambda: (service.restart if running else service.start)(session_id)
        return lambda: calls[verb](session_id)

    # -- one session ------------------------------------------------------------------

    def request(self, session_ids: tuple[str, ...], verb: Verb, *, hidden: frozenset[str] = frozenset()) -> None:
        """A verb on one session or, with several, a bulk action. Sessions the filter
        ``hidden`` always get the question (a bulk one, which counts them), even one alone."""
        if session_ids and self._refuse_unreachable(
                f"{verb.label.lower()} {self._name(session_ids[0]) if len(session_ids) == 1 else 'sessions'}"):
            return
        if len(session_ids) == 1 and not hidden:
            self._request_one(session_ids[0], verb)
        elif session_ids:
            self._request_many(list(session_ids), verb, hidden=hidden)

    def _request_one(self, session_id: str, verb: Verb) -> None:
        app = self.app
        session = app.state.sessions.get(session_id)
        if session is None or session_id in self.deleted:
            return
        if session_id in self.busy:
            app.notify(f"{self._name(session_id)} is already {self.busy[session_id].ongoing}; wait for it.",
                       title=f"{verb.label} ignored", severity="warning", timeout=4, markup=False)
            return
        if verb != Verb.RESTART_OR_START:
            why = refusal(session, verb)
            if why is not None:
                app.notify(f"Cannot {verb.label.lower()} {self._name(session_id)}: {why}.",
                           title=f"{verb.label} refused", severity="error", timeout=6, markup=False)
                return
        if not verb.asks_first:
            self._run_one(session_id, verb)
            return
        title, question, yes = QUESTIONS[verb]

        def answered(yes_: bool | None) -> None:
            if yes_ and session_id not in self.busy:
                self._run_one(session_id, verb)

        app.push_screen(ConfirmScreen(title, question.format(name=self._name(session_id)), yes), answered)

    def _run_one(self, session_id: str, verb: Verb) -> None:
        self.busy[session_id] = verb
        self.app.run_worker(self._one(session_id, verb), group="actions", exit_on_error=False)

    async def _one(self, session_id: str, verb: Verb) -> None:
        app = self.app
        name = self._name(session_id)
        try:
            outcome, _ = await self.attempt(self._service_call(verb, session_id)())
        finally:
            self.busy.pop(session_id, None)
        if not outcome.ok:
            app.notify(outcome.reason, title=f"{verb.label} {name} refused", severity="error", timeout=8,
                       markup=False)
            return
        if verb == Verb.DELETE:
            self.deleted.add(session_id)
            app.forget(session_id)
        app.notify(f"{verb.done} {name}", timeout=3, markup=False)

    # -- many sessions ----------------------------------------------------------------

    def stop_all(self) -> None:
        if self._refuse_unreachable("stop sessions"):
            return
        running = [s.id for s in self.app.state.sessions.values()
                   if s.status in RUNNING or s.status == Status.DISCONNECTED]
        if not running:
            self.app.notify("No session is running.", timeout=3)
            return
        self._request_many(running, Verb.STOP, what="running")

    def _request_many(
        self, session_ids: list[str], verb: Verb, what: str = "marked", *, hidden: frozenset[str] = frozenset(),
    ) -> None:
        app = self.app
        sessions = [s for s in (app.state.sessions.get(i) for i in session_ids) if s is not None]
        ready: list[Session] = []
        refused: list[str] = []
        for session in sessions:
            if session.id in self.deleted:
                continue
            if session.id in self.busy:
                refused.append(f"already {self.busy[session.id].ongoing}")
                continue
            why = refusal(session, verb)
            if why is None:
                ready.append(session)
            else:
                refused.append(why)
        if not ready:
            title, body = summary(verb, 0, refused)
            app.notify(body, title=f"Nothing to {verb.label.lower()}: {title.split(': ', 1)[1]}",
                       severity="warning", timeout=6, markup=False)
            return
        count = plural(len(ready), f"{what} session")
        question = f"{verb.label} {count}? {BULK_WARNINGS.get(verb, '')}".rstrip()
        unseen = sum(1 for s in ready if s.id in hidden)
        if unseen:
            question += "\n" + hidden_note(unseen, len(ready))
        if refused:
            question += f"\n{plural(len(refused), 'other')} cannot: {'; '.join(sorted(set(refused))[:3])}."

        def answered(yes: bool | None) -> None:
            if yes:
                ids = [s.id for s in ready if s.id not in self.busy]
                for session_id in ids:
                    self.busy[session_id] = verb
                app.run_worker(self._many(ids, verb, refused), group="actions", exit_on_error=False)

        app.push_screen(ConfirmScreen(f"{verb.label} {plural(len(ready), 'session')}?", question,
                                      f"{verb.label} {len(ready)}", danger=verb != Verb.START), answered)

    async def _many(self, session_ids: list[str], verb: Verb, refused: list[str]) -> None:
        """Run in batches: many at once, without one slow call holding up the rest."""
        app = self.app
        done = 0
        refused = list(refused)
        total = len(session_ids)
        app.post_to_screens(BulkProgress(verb, 0, total))
        try:
            for start in range(0, total, BULK_BATCH):
                batch = session_ids[start : start + BULK_BATCH]
                outcomes = await asyncio.gather(*(self.attempt(self._service_call(verb, i)()) for i in batch))
                for session_id, (outcome, _) in zip(batch, outcomes, strict=True):
                    self.busy.pop(session_id, None)
                    if outcome.ok:
                        done += 1
                        if verb == Verb.DELETE:
                            self.deleted.add(session_id)
                            app.forget(session_id)
                    else:
                        refused.append(outcome.reason)
                app.post_to_screens(BulkProgress(verb, start + len(batch), total))
        finally:
            for session_id in session_ids:
                self.busy.pop(session_id, None)
            app.post_to_screens(BulkProgress(verb, total, total, finished=True))
        title, body = summary(verb, done, refused)
        app.notify(body, title=title, severity="warning" if refused else "information",
                   timeout=8 if refused else 4, markup=False)
