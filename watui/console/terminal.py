"""The terminal a console runs in: hang-ups, the signals that end it, and keeping everything but
the app off its screen.

Shared by the in-process console (:mod:`watui.console.run`) and ``watui attach``
(:mod:`watui.console.attach`).

What a hang-up does to Textual's terminal driver (``LinuxDriver``), and so why this module
replaces parts of it. When an SSH link drops, the kernel hangs the terminal up: writes fail
with EIO, reads return end-of-file, and the session leader gets SIGHUP *and SIGCONT*.

- The driver takes that SIGCONT for a resume from ctrl+z and starts application mode again
  on the dead terminal, with a new writer thread. That thread dies on its first EIO, silently;
  its queue holds 30 writes, and the 31st blocks the event loop for good. Nothing on the loop
  runs again: not the shutdown, not a SIGTERM handled there (``loop.add_signal_handler``).
- The input thread reads end-of-file from the dead terminal in a loop, without waiting:
  the process spins until something sets its exit flag, which the frozen loop never does.
- A terminal that accepts nothing (a stalled SSH connection) blocks the writer thread in
  ``write`` and then the loop the same way.

:class:`ConsoleTerminal` handles SIGHUP, SIGTERM and SIGINT in Python's own signal handlers,
which run even while the loop is blocked, and hands Textual a :class:`TerminalDriver` whose
output never blocks for good and is dropped once the terminal is gone, which never restarts on
a dead terminal, and whose input stops at the hang-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, TextIO, cast

from textual.drivers.linux_driver import LinuxDriver

from watui.config import Settings
from watui.logs import configure_logging
from watui.stores.datadir import DataDirUnusable, make_private

if TYPE_CHECKING:
    from textual.app import App
    from textual.driver import Driver

log = logging.getLogger(__name__)

GIVE_UP_AFTER = 1.0
"""Seconds a terminal that accepts nothing gets, once the console is ending, before its output
is dropped (the process must not wait on a stalled SSH connection to end)."""

BACKSTOP = 10.0
"""Seconds after SIGHUP/SIGTERM/SIGINT by which the process ends, cleanly or not: if the clean
path hangs somewhere nobody foresaw, the process still goes (the sessions' state is in the store)."""

HANGUP_EVENTS = select.POLLHUP | select.POLLERR | select.POLLNVAL

RESTORE_SEQUENCE = b"\x1b[<u\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l\x1b[?2004l\x1b[?1004l\x1b[?1049l\x1b[?25h"
"""Undo what Textual's application mode turned on (keyboard protocol, mouse, bracketed paste,
focus events, the alternate screen, the hidden cursor): for a process that ends at once."""


class ConsoleTerminal:
    """The console's terminal for one run of the app, and the signals that end it.

    ``on_end`` is called on the event loop at the first SIGHUP (the terminal hung up), SIGTERM
    or SIGINT, or when the driver sees the terminal hang up without a signal; it should close
    what the console holds and end the app. A second SIGTERM or SIGINT ends the process at
    once, and :data:`BACKSTOP` seconds after the first signal it ends whatever happens.
    Use as a context manager around the app's run, with ``app.driver_class =
    terminal.driver(app.driver_class)``.
    """

    def __init__(self, on_end: Callable[[], None]) -> None:
        self.on_end = on_end
        self.gone = threading.Event()
        """The terminal hung up, or was given up while ending: its output is dropped."""
        self.ending = threading.Event()
        """A signal (or the hang-up) asked the console to end."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, Any] = {}
        self._saved_modes: list[Any] | None = None
        self._terminal_fds: set[int] = set()
        self._backstop_armed = threading.Event()
        self._closed = threading.Event()

    # ------------------------------------------------------------ the run

    def __enter__(self) -> ConsoleTerminal:
        self._loop = asyncio.get_running_loop()
        self._terminal_fds = {fd for fd in _standard_fds() if _isatty(fd)}
        if 0 in self._terminal_fds:
            with contextlib.suppress(termios.error):
                self._saved_modes = termios.tcgetattr(0)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError, OSError):  # not the main thread: leave signals alone
                self._previous[signum] = signal.signal(signum, self._on_signal)
        threading.Thread(target=self._backstop, name="watui-backstop", daemon=True).start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(signum, handler)
        if not self._backstop_armed.is_set():
            self._closed.set()  # no signal came: the backstop has nothing to guard, let it go
            self._backstop_armed.set()
        if self.gone.is_set():
            self._silence()

    def driver(self, driver_class: type[Driver]) -> type[Driver]:
        """The driver to give the app: :class:`TerminalDriver` in place of Textual's
        ``LinuxDriver``; any other (the web driver under ``watui web``, a test's) unchanged."""
        if driver_class is not LinuxDriver:
            return driver_class
        return cast("type[Driver]", type("BoundTerminalDriver", (TerminalDriver,), {"terminal": self}))

    @property
    def usable(self) -> bool:
        """Whether anything printed now reaches the user (false once the terminal is gone)."""
        return not self.gone.is_set()

    # ------------------------------------------------------------ ending

    def hung_up(self, why: str = "the terminal hung up") -> None:
        """The terminal went away (the driver saw it, or SIGHUP said so): end the console."""
        self.gone.set()
        self._begin_end(why)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Python runs this in the main thread even while the loop is blocked (in a write to the
        # terminal, say): set flags and schedule, take no lock, log nothing.
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            # SIGHUP comes more than once in a hang-up (kernel, shell): never "again". Sent by
            # hand to a terminal that is still there, it ends the console like SIGTERM does.
            if 0 in self._terminal_fds and _hung_up(0):
                self.gone.set()
            self._begin_end(name)
            return
        if self.ending.is_set():
            self._end_now(signum)
        self._begin_end(name)

    def _begin_end(self, why: str) -> None:
        first = not self.ending.is_set()
        self.ending.set()
        if not first:
            return
        self._backstop_armed.set()
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: nothing left to end
                self._loop.call_soon_threadsafe(self._end, why)

    def _end(self, why: str) -> None:
        log.info("ending the console (%s)", why)
        self.on_end()

    def _end_now(self, signum: int) -> None:
        """The second SIGTERM/SIGINT: put the terminal back as best we can, and die of it."""
        self._restore_terminal()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def _backstop(self) -> None:
        self._backstop_armed.wait()
        if self._closed.wait(BACKSTOP):
            return
        log.error("the console did not end within %.0f s of the signal; ending it now", BACKSTOP)
        self._restore_terminal()
        os._exit(1)

    def _restore_terminal(self) -> None:
        """Without blocking: leave application mode and give the terminal its modes back."""
        if self.gone.is_set() or 0 not in self._terminal_fds:
            return
        with contextlib.suppress(OSError):
            fd = open_nonblocking(0)
            try:
                os.write(fd, RESTORE_SEQUENCE)
            finally:
                os.close(fd)
        if self._saved_modes is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(0, termios.TCSANOW, self._saved_modes)

    def _silence(self) -> None:
        """Point what was the terminal at /dev/null: a print, or the interpreter's flush at
        exit, must not fail on a hung-up terminal or block on a stalled one."""
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            for fd in self._terminal_fds - {0}:
                with contextlib.suppress(OSError):
                    os.dup2(devnull, fd)
        finally:
            os.close(devnull)


class TerminalOutput:
    """What Textual's writer thread writes to: the terminal, through a descriptor of its own
    in non-blocking mode, so the thread never sits in ``write`` for good and never dies of EIO.

    While the terminal accepts nothing, a write waits (Textual's back-pressure); once the
    console is ending it waits at most :data:`GIVE_UP_AFTER` seconds. After a hang-up (EIO),
    or giving up, every write is dropped. Open while the driver is in application mode.
    """

    def __init__(self, stream: TextIO, terminal: ConsoleTerminal) -> None:
        self.stream = stream
        self.encoding = stream.encoding or "utf-8"
        self.terminal = terminal
        self._fd: int | None = None

    def open(self) -> None:
        if self._fd is None:
            self._fd = open_nonblocking(self.stream.fileno())

    def write(self, text: str) -> int:
        fd = self._fd
        data = memoryview(text.encode(self.encoding, "replace"))
        stalled_since: float | None = None
        while data and fd is not None and not self.terminal.gone.is_set():
            try:
                data = data[os.write(fd, data):]
                stalled_since = None
            except BlockingIOError:
                now = time.monotonic()
                stalled_since = stalled_since or now
                if self.terminal.ending.is_set() and now - stalled_since >= GIVE_UP_AFTER:
                    self.terminal.gone.set()
                    break
                select.select([], [fd], [], 0.1)
            except OSError:  # EIO: the terminal hung up
                self.terminal.hung_up()
        return len(text)

    def flush(self) -> None:
        """Nothing to flush: every write goes straight to the terminal."""

    def fileno(self) -> int:
        return self._fd if self._fd is not None else self.stream.fileno()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


class TerminalDriver(LinuxDriver):
    """Textual's driver for a terminal that may hang up (see the module's docstring).

    Bound to its :class:`ConsoleTerminal` by :meth:`ConsoleTerminal.driver`.
    """

    terminal: ClassVar[ConsoleTerminal]

    def __init__(self, app: App[Any], *, debug: bool = False, mouse: bool = True,
                 size: tuple[int, int] | None = None) -> None:
        super().__init__(app, debug=debug, mouse=mouse, size=size)
        assert self._file is not None
        self._output = TerminalOutput(self._file, self.terminal)
        self._file = cast(Any, self._output)  # the writer thread's file: write, flush, fileno
        self._watcher: HangupWatcher | None = None

    def start_application_mode(self) -> None:
        # The SIGCONT that comes with a hang-up is not a resume from ctrl+z.
        if self.terminal.gone.is_set() or _hung_up(self.fileno):
            return
        self._output.open()
        super().start_application_mode()
        if self._watcher is None and self.input_tty:
            self._watcher = HangupWatcher(self.fileno, self._hung_up)

    def run_input_thread(self) -> None:
        try:
            super().run_input_thread()
        except OSError:
            if not (self.terminal.gone.is_set() or _hung_up(self.fileno)):
                raise  # a real error: Textual's wrapper shows it

    def close(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.stop()
        super().close()
        self._output.close()

    def _hung_up(self) -> None:
        # Stop the input thread, which would read end-of-file in a loop, then end the console.
        self.exit_event.set()
        self.terminal.hung_up()


class HangupWatcher:
    """A thread that waits, without spinning, until a terminal hangs up (then calls
    ``on_hangup``) or :meth:`stop` is called."""

    def __init__(self, fd: int, on_hangup: Callable[[], None]) -> None:
        self.fd = fd
        self.on_hangup = on_hangup
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._watch, name="watui-hangup", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"x")
        self._thread.join(1.0)
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _watch(self) -> None:
        poller = select.poll()
        poller.register(self.fd, 0)  # a hang-up is always reported; nothing else is asked for
        poller.register(self._wake_read, select.POLLIN)
        while True:
            for fd, events in poller.poll():
                if fd == self._wake_read:
                    return
                if events & HANGUP_EVENTS:
                    self.on_hangup()
                    return


def open_nonblocking(fd: int) -> int:
    """A descriptor of its own on ``fd``'s terminal, in non-blocking mode (the flag is per
    open file, so ``fd``, shared with the shell, stays as it is). Not a terminal: a duplicate."""
    try:
        return os.open(os.ttyname(fd), os.O_WRONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return os.dup(fd)


def _hung_up(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, 0)
    return any(events & HANGUP_EVENTS for _, events in poller.poll(0))


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _standard_fds() -> set[int]:
    """0, 1, 2 and whatever Python's own standard streams use (see
    :func:`keep_native_output_off_screen`)."""
    fds = {0, 1, 2}
    for stream in (sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            if stream is not None:
                fds.add(stream.fileno())
    return fds


def log_to_file(settings: Settings) -> None:
    """Library warnings go to a file: anything printed to the terminal would tear the screen."""
    try:
        make_private(settings.data_dir)
        configure_logging(settings.log_format, filename=settings.data_dir / "watui.log")
    except OSError as exc:
        raise DataDirUnusable(f"cannot write to the data dir {settings.data_dir}: {exc.strerror}") from None


def keep_native_output_off_screen(log_path: Path) -> None:
    """neonize's Go runtime prints straight to file descriptors 1 and 2, which would tear
    Textual's screen. Point those descriptors at the log, and hand Python (and so Textual,
    which writes to ``sys.__stderr__`` and sizes the screen from ``sys.__stdout__``) new
    descriptors on the terminal."""
    if not (os.isatty(1) and os.isatty(2)):
        return
    terminal_out, terminal_err = os.dup(1), os.dup(2)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    sys.stdout = sys.__stdout__ = os.fdopen(terminal_out, "w", buffering=1)  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = os.fdopen(terminal_err, "w", buffering=1)  # type: ignore[misc]


def say(line: str) -> None:
    """Print after the app ended; the terminal may be gone (a hung-up SSH session)."""
    try:
        print(line, flush=True)
    except OSError:
        # Nothing to tell and nowhere to tell it: keep the interpreter's exit flush quiet too.
        sys.stdout = open(os.devnull, "w")
