"""User corrections: recent predictions held in memory, and the corrections stored in SQL.

A correction stores only the 28x28 image the model saw (PNG), the predicted digit, its confidence,
the corrected label, the model's sha256 and the time: never the original upload, nor anything about
the client. SQLite under data/ by default; set DATABASE_URL to share one PostgreSQL between replicas.
"""

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (Column, DateTime, Engine, Float, Integer, LargeBinary, MetaData, SmallInteger, String, Table,
                        create_engine, event, func, insert, select, update)
from sqlalchemy.exc import DBAPIError

DEFAULT_DATABASE_URL = f"sqlite:///{Path(__file__).resolve().parent / 'data' / 'feedback.db'}"

# The schema's version, kept in the database: migrate() brings any older database up to it, step by step.
SCHEMA_VERSION = 1

metadata = MetaData()
schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))
corrections = Table(
    "corrections", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("prediction_id", String(32), nullable=False, unique=True),
    Column("image_png", LargeBinary, nullable=False),
    Column("predicted", SmallInteger, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("label", SmallInteger, nullable=False),
    Column("model_sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
MIGRATIONS = {1: lambda conn: metadata.create_all(conn, tables=[corrections])}


@dataclass(frozen=True)
class Seen:
    """What the service keeps of a recent prediction, so that a correction can name it."""

    image_png: bytes
    predicted: int
    confidence: float
    model_sha256: str
    at: float


class RecentPredictions:
    """A bounded, expiring window of recent predictions, safe across the threadpool's threads."""

    def __init__(self, size: int, ttl_s: float) -> None:
        self.size, self.ttl_s = size, ttl_s
        self._items: OrderedDict[str, Seen] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, image_png: bytes, predicted: int, confidence: float, model_sha256: str) -> str:
        prediction_id = uuid.uuid4().hex
        with self._lock:
            self._items[prediction_id] = Seen(image_png, predicted, confidence, model_sha256, time.monotonic())
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return prediction_id

    def get(self, prediction_id: str) -> Seen | None:
        with self._lock:
            seen = self._items.get(prediction_id)
        if seen is None or time.monotonic() - seen.at > self.ttl_s:
            return None
        return seen


def make_engine(url: str = DEFAULT_DATABASE_URL) -> Engine:
    if url.startswith("sqlite"):
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        # Several workers write to one file: wait for the lock rather than fail, and let readers run
        # beside a writer (WAL). Committed rows survive a killed process.
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def migrate(engine: Engine, attempts: int = 3) -> int:
    """Bring the schema up to SCHEMA_VERSION; several workers may start at once, so a lost race is retried."""
    for attempt in range(attempts):
        try:
            with engine.begin() as conn:
                metadata.create_all(conn, tables=[schema_version])
                current = conn.execute(select(func.max(schema_version.c.version))).scalar() or 0
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    MIGRATIONS[version](conn)
                    conn.execute(insert(schema_version).values(version=version))
                return max(current, SCHEMA_VERSION)
        except DBAPIError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


class FeedbackStore:
    """Corrections in SQL: one transaction per write."""

    def __init__(self, url: str = DEFAULT_DATABASE_URL) -> None:
        self.url = url
        self.engine = make_engine(url)
        migrate(self.engine)

    def record(self, prediction_id: str, seen: Seen, label: int) -> int:
        """Store a correction, or replace the label of an earlier one for the same prediction; returns its id."""
        with self.engine.begin() as conn:
            row = conn.execute(select(corrections.c.id).where(corrections.c.prediction_id == prediction_id)).first()
            if row:
                conn.execute(update(corrections).where(corrections.c.id == row.id).values(label=label))
                return row.id
            return conn.execute(insert(corrections).values(
                prediction_id=prediction_id, image_png=seen.image_png, predicted=seen.predicted,
                confidence=seen.confidence, label=label, model_sha256=seen.model_sha256,
                created_at=datetime.now(UTC))).inserted_primary_key[0]

    def stats(self) -> dict:
        with self.engine.connect() as conn:
            by_label = dict(conn.execute(select(corrections.c.label, func.count()).group_by(corrections.c.label)).all())
            by_predicted = dict(conn.execute(
                select(corrections.c.predicted, func.count()).group_by(corrections.c.predicted)).all())
        return {"total": sum(by_label.values()),
                "by_label": {str(d): by_label.get(d, 0) for d in range(10)},
                "by_predicted": {str(d): by_predicted.get(d, 0) for d in range(10)}}

    def all(self) -> list[tuple[bytes, int]]:
        """Every correction's 28x28 PNG and label, oldest first."""
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                select(corrections.c.image_png, corrections.c.label).order_by(corrections.c.id))]
