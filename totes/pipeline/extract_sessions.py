"""The extract's two sessions to ToteSys, in one snapshot: the second surveys tables
ahead of the first, then shares its copies."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from threading import Lock

import psycopg2
from psycopg2.extensions import connection as Connection

from totes.pipeline.extract_survey import Survey, survey
from totes.schema.source import SourceTable


class ExtractSessions:
    """Whole-table surveys for this extract, in its snapshot, and the extract's sessions.

    With a second session, the surveys run on it, up to ``AHEAD`` tables ahead of the
    extract, while the first session copies: the source's two scans of a table (survey,
    COPY) then run on two cores instead of one after the other. Once it has no survey
    left to start, it copies parts too (``share``): the surveys end well before the
    copies, and it would otherwise idle through the last big tables. The second session
    reads the same snapshot (``pg_export_snapshot``), so both see exactly the same rows.
    """

    # Surveys held at once: enough to keep the second session busy past small tables; each
    # holds a table's bucket checksums (memory), so not every table's.
    AHEAD = 2

    def __init__(
        self,
        conn: Connection,
        helper: Connection | None,
        now: str,
        tables: list[SourceTable],
        part_rows: int,
    ) -> None:
        self._conn, self._helper, self._now, self._part_rows = conn, helper, now, part_rows
        self._waiting = deque(tables)  # those to survey, in the order the extract asks
        self._ahead: list[tuple[str, Future[Survey]]] = []
        self._pool: ThreadPoolExecutor | None = None
        if helper is not None and tables:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_export_snapshot()")
                (snapshot,) = cur.fetchone()
            helper.autocommit = False
            helper.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with helper.cursor() as cur:
                cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="extract-survey")
            self._submit()

    def _submit(self) -> None:
        while self._pool is not None and self._waiting and len(self._ahead) < self.AHEAD:
            table = self._waiting.popleft()
            future = self._pool.submit(survey, self._helper, table, self._now, self._part_rows)
            self._ahead.append((table.name, future))

    @property
    def conn(self) -> Connection:
        """The extract's own session."""
        return self._conn

    def share[Job, Done](
        self, jobs: Iterable[Job], work: Callable[[Connection, Job], Done]
    ) -> list[Done]:
        """``work(session, job)`` for every job, results in the jobs' order: on this session,
        and on the second too when it has no survey left to start (after those it has
        already started; not at all if this session is done first)."""
        queue = deque(jobs)
        order = list(queue)
        if self._pool is None or self._waiting or len(queue) < 2:
            return [work(self._conn, job) for job in order]
        lock, done = Lock(), {}

        def drain(session: Connection) -> None:
            try:
                while True:
                    with lock:
                        if not queue:
                            return
                        job = queue.popleft()
                    done[job] = work(session, job)
            except BaseException:
                with lock:  # neither session starts another job
                    queue.clear()
                raise

        helping = self._pool.submit(drain, self._helper)
        try:
            drain(self._conn)
        except BaseException:
            wait_for([helping])
            raise
        if not helping.cancel():  # started: it ends with its job in hand
            helping.result()
        return [done[job] for job in order]

    def survey(self, table: SourceTable) -> Survey:
        if self._ahead and self._ahead[0][0] == table.name:
            _, future = self._ahead.pop(0)
            found = future.result()
            self._submit()
            return found
        return survey(self._conn, table, self._now, self._part_rows)

    def close(self) -> None:
        """Stop the second session's work (on an error, mid-query) and end its snapshot."""
        if self._pool is None:
            return
        if any(not future.done() for _, future in self._ahead):
            self._helper.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        # If the session is gone, its snapshot went with it; the first error is what counts.
        with contextlib.suppress(psycopg2.OperationalError, psycopg2.InterfaceError):
            self._helper.rollback()
