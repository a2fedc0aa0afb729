"""The reject files written in a process of their own, so the work does not hold this one's GIL.

Writing a big reject workbook is Python string work (the sheet XML, the CSV rows, xlsxwriter
assembling and compressing the workbook). In a thread it takes turns with reading and
checking for the one interpreter lock; in a child process it runs on the other core.
:class:`ChildSink` has the :class:`~pipeline.ingest.report.sink.Sink` methods and forwards
each to ``python -m pipeline.ingest.report.sink_process``, which imports only the sink.

The conversation is pickled messages on the child's stdin, answered on its stdout (the child
moves its own stdout to stderr first, so nothing else can land in the answers)::

    ("open", xlsx, csv, headers, limits)  -> ("ready", None) | ("error", exception)
    ("rows", RejectBatch)                 -> (no answer: an error is kept for "finish")
    ("finish",)                           -> ("finished", None) | ("error", exception)
    ("publish",)                          -> ("published", sheets) | ("error", exception)
    ("discard",)                          -> ("discarded", None)

The files are under temporary names until "publish" (the child renames them). When this
process goes away, even by ``kill -9``, the child reads the end of its input, removes its
temporary files and exits. The child ignores Ctrl-C and the stop signals a service manager
sends to every process of a service: its parent decides. Only leadpipe's own processes
share the pipe, so pickle is safe here.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pipeline.files import WORK_DIR_NAME
from pipeline.ingest.report.batch import RejectBatch
from pipeline.ingest.report.sheet import Limits

if TYPE_CHECKING:
    from pipeline.ingest.report.sink import Sink

#: How long a child may take to discard its files before it is killed.
DISCARD_WAIT_SECONDS = 10.0


class ChildGone(OSError):
    """The child process ended (or never started) without answering."""


class ChildSink:
    """A :class:`Sink` in a child process; the same methods, used from one thread at a time.

    Raises :class:`ChildGone` when the child cannot be started (the caller may then write in
    this process) and the sink's own error when the files cannot be opened.
    """

    def __init__(
        self,
        xlsx_path: Path,
        csv_path: Path,
        headers: Sequence[str],
        limits: Limits,
        *,
        process: subprocess.Popen[bytes] | None = None,
    ) -> None:
        """``process``: a child from :func:`start_child` (its start has overlapped other
        work); without it, one is started now."""
        self._proc = process if process is not None else start_child()
        self._done = False
        self._targets = (Path(xlsx_path), Path(csv_path))
        try:
            self._send(("open", str(xlsx_path), str(csv_path), list(headers), tuple(limits)))
            self._answer("ready")
        except BaseException:
            self._end()
            raise

    def write(self, batch: RejectBatch) -> None:
        self._send(("rows", batch))

    def finish(self) -> None:
        self._send(("finish",))
        self._answer("finished")

    def publish(self) -> int:
        self._send(("publish",))
        sheets: int = self._answer("published")
        self._end()
        return sheets

    def discard(self) -> None:
        if self._done:
            return
        with contextlib.suppress(OSError, EOFError, pickle.UnpicklingError):
            self._send(("discard",))
            self._answer("discarded")
        self._end()

    def _send(self, message: tuple[Any, ...]) -> None:
        pipe = self._proc.stdin
        assert pipe is not None  # made with stdin=PIPE
        try:
            pickle.dump(message, pipe, protocol=pickle.HIGHEST_PROTOCOL)
            pipe.flush()
        except (BrokenPipeError, ValueError) as exc:  # ValueError: the pipe is closed
            raise self._gone() from exc

    def _answer(self, expected: str) -> Any:
        pipe = self._proc.stdout
        assert pipe is not None  # made with stdout=PIPE
        try:
            kind, value = pickle.load(pipe)  # noqa: S301 (our own child)
        except (EOFError, pickle.UnpicklingError, OSError) as exc:
            raise self._gone() from exc
        if kind == "error":
            raise value
        if kind != expected:
            raise ChildGone(f"the reject writer's process answered {kind!r}, not {expected!r}")
        return value

    def _gone(self) -> ChildGone:
        code = self._proc.poll()
        if code is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self._proc.wait(timeout=1.0)
        how = "is not answering" if code is None else f"ended with exit code {code}"
        self._end()
        self._remove_leftovers()
        return ChildGone(f"the reject writer's process {how}; its files were not written")

    def _end(self) -> None:
        """Close the pipes and reap the child (killed if it does not end by itself)."""
        if self._done:
            return
        self._done = True
        for pipe in (self._proc.stdin, self._proc.stdout):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()
        try:
            self._proc.wait(timeout=DISCARD_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def _remove_leftovers(self) -> None:
        """The temporary files a child that died left (named as :func:`atomic_path` names them:
        the target's name is unique to this writer, as reject file names carry a stamp)."""
        for target in self._targets:
            folder = target.parent / WORK_DIR_NAME / "tmp"
            for leftover in folder.glob(f".{glob.escape(target.name)}.*.part"):
                with contextlib.suppress(OSError):
                    leftover.unlink()


def start_child() -> subprocess.Popen[bytes]:
    """A child process, started and importing the sink while the caller goes on; it waits for
    a :class:`ChildSink` to send it "open", and ends by itself at the end of its input.

    Raises :class:`ChildGone` when it cannot be started.
    """
    try:
        return subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # not in the terminal's process group: Ctrl-C is the parent's to handle (while
            # the child still imports, it could not ignore it yet)
            start_new_session=True,
        )
    except OSError as exc:
        raise ChildGone(f"the reject writer's process did not start: {exc}") from exc


#: A child started ahead of any writer (:func:`start_spare`), for the next one to take.
_spare: list[subprocess.Popen[bytes]] = []


def start_spare() -> None:
    """Start a child now for the next :func:`take_child`, e.g. when a command begins, so that
    it has loaded by the time the first rejected rows come (a few-row file otherwise waits for
    the child's start at its end). The caller stops it (:func:`stop_spare`) if no writer took
    it; so does the interpreter's exit. Nothing happens when one is waiting already or none
    can start."""
    if _spare:
        return
    with contextlib.suppress(ChildGone):
        child = start_child()
        _spare.append(child)
        atexit.register(stop_child, child)


def stop_spare() -> None:
    """Stop the spare child if no writer took it (idempotent)."""
    while _spare:
        stop_child(_spare.pop())


def take_child() -> subprocess.Popen[bytes]:
    """The spare child if one is waiting (and still there), else a new one (:func:`start_child`)."""
    while _spare:
        child = _spare.pop()
        if child.poll() is None:
            return child
        stop_child(child)
    return start_child()


def stop_child(process: subprocess.Popen[bytes]) -> None:
    """End a child :func:`start_child` started that was never given files: it has nothing to
    remove, so it is killed rather than waited for (it may still be importing). Idempotent."""
    for pipe in (process.stdin, process.stdout):
        with contextlib.suppress(OSError):
            if pipe is not None:
                pipe.close()
    if process.returncode is not None:
        return
    with contextlib.suppress(OSError):
        process.kill()
    process.wait()


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError saying what it was."""
    try:
        pickle.loads(pickle.dumps(exc))  # noqa: S301 (made here)
    except Exception:  # any exception that cannot cross is described instead
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc


def serve(requests: IO[bytes], answers: IO[bytes]) -> int:
    """The child's side: one sink, driven by the messages on ``requests``."""
    # loaded here, in the child, before the first message: the parent never needs xlsxwriter
    from pipeline.ingest.report.sink import Sink

    sink: Sink | None = None
    error: BaseException | None = None

    def answer(kind: str, value: Any) -> None:
        pickle.dump((kind, value), answers, protocol=pickle.HIGHEST_PROTOCOL)
        answers.flush()

    try:
        while True:
            try:
                message = pickle.load(requests)  # noqa: S301 (our own parent)
            except EOFError:  # the parent is gone: leave nothing behind
                return 1
            kind = message[0]
            if kind == "open":
                try:
                    sink = Sink(Path(message[1]), Path(message[2]), message[3], Limits(*message[4]))
                except BaseException as exc:  # the parent raises it
                    answer("error", _portable(exc))
                    return 1
                answer("ready", None)
            elif kind == "rows":
                if sink is not None and error is None:
                    try:
                        sink.write(message[1])
                    except BaseException as exc:  # kept for "finish"
                        error = exc
            elif kind == "finish":
                if sink is not None and error is None:
                    try:
                        sink.finish()
                    except BaseException as exc:
                        error = exc
                if error is not None:
                    answer("error", _portable(error))
                else:
                    answer("finished", None)
            elif kind == "publish":
                if sink is None or error is not None:
                    answer("error", _portable(error or RuntimeError("no reject files to publish")))
                    return 1
                try:
                    sheets = sink.publish()
                except BaseException as exc:  # the files were not put in place
                    answer("error", _portable(exc))
                    return 1
                sink = None
                answer("published", sheets)
                return 0
            elif kind == "discard":
                if sink is not None:
                    sink.discard()
                    sink = None
                answer("discarded", None)
                return 0
    finally:
        if sink is not None:
            with contextlib.suppress(Exception):
                sink.discard()


def main() -> int:
    # The parent decides when to stop: Ctrl-C reaches the whole process group and a service
    # manager stopping leadpipe signals every process of the service, but only the parent
    # knows whether the files are wanted. Its end (even by kill -9) ends the input here.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints go to stderr
    try:
        return serve(sys.stdin.buffer, answers)
    except BrokenPipeError:  # the parent is gone; serve() has removed the files
        return 1
    finally:
        with contextlib.suppress(OSError):
            answers.close()


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # the files are closed: no interpreter teardown for the parent to wait for
