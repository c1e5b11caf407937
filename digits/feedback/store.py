"""Corrections in SQL: SQLite under data/ by default; set DATABASE_URL to share one PostgreSQL between replicas.

Corrections come from strangers, so they are untrusted: each waits for an operator's review
(`python -m digits.feedback.review`), and `train.py feedback` learns only from those accepted.
"""

import io
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    and_,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError

from digits.feedback.ids import Seen
from digits.inference.weights import model_id
from digits.paths import DATA

DEFAULT_DATABASE_URL = f"sqlite:///{DATA / 'feedback.db'}"
# The schema's version, kept in the database: migrate() brings any older database up to it, step by step.
SCHEMA_VERSION = 3
# A correction's review: learned from only once an operator accepted it.
PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"

metadata = MetaData()
schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))
corrections = Table(
    "corrections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("prediction_id", String(32), nullable=False, unique=True),
    Column("image_png", LargeBinary, nullable=False),
    Column("predicted", SmallInteger, nullable=False),
    Column("confidence", Float, nullable=False),
    Column("label", SmallInteger, nullable=False),
    Column("model_sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("client", String(32)),  # client_key() of the sender's address; none for corrections from before it
    Column("review", String(8), nullable=False, server_default=PENDING),
)
number_corrections = Table(
    "number_corrections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("prediction_id", String(32), nullable=False, unique=True),
    Column("crops_png", LargeBinary, nullable=False),  # the digits' 28x28 inputs side by side, as the model saw them
    Column("predicted", String(64), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("label", String(64), nullable=False),
    Column("model_sha256", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("client", String(32)),
    Column("review", String(8), nullable=False, server_default=PENDING),
)
TABLES = (corrections, number_corrections)


def _reviews(conn: Connection) -> None:
    """The client and review columns, on tables made before them (tables made since have them already)."""
    for table in TABLES:
        have = {c["name"] for c in inspect(conn).get_columns(table.name)}
        if "client" not in have:
            conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN client VARCHAR(32)"))
        if "review" not in have:
            conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN review VARCHAR(8) NOT NULL DEFAULT '{PENDING}'"))
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS ix_{table.name}_client ON {table.name} (client, created_at)"))


MIGRATIONS = {
    1: lambda conn: metadata.create_all(conn, tables=[corrections]),
    2: lambda conn: metadata.create_all(conn, tables=[number_corrections]),
    3: _reviews,
}


@dataclass(frozen=True)
class Listed:
    """A stored correction, with what an operator needs to judge it."""

    table: str
    id: int
    image_png: bytes  # the 28x28 input, or a number's crops side by side
    predicted: str
    label: str
    confidence: float
    client_total: int  # corrections from the same client, in all
    model: str  # the weights that made the prediction (model_id)
    created: datetime

    @property
    def number(self) -> bool:
        return self.table == number_corrections.name

    @property
    def name(self) -> str:
        """How operators and exported datasets name a correction: its kind and its row, such as digit-3."""
        return f"{'number' if self.number else 'digit'}-{self.id}"


def labelled_digits(pixels: np.ndarray, label: str, number: bool) -> list[tuple[np.ndarray, int]]:
    """What a correction teaches: its 28×28 input and right digit, or a number's digits one by one when the right
    number has as many digits as were read (the crops, 28 px wide each, side by side); else nothing."""
    if not number:
        return [(pixels, int(label))]
    if pixels.shape[1] != 28 * len(label):
        return []
    return [(pixels[:, 28 * i : 28 * (i + 1)], int(d)) for i, d in enumerate(label)]


def tally(rows: Iterable[tuple[str, str, str]]) -> dict[str, tuple[int, int]]:
    """For each model, of (model, predicted, label) rows: how many of its answers were corrected, and in how many
    the user confirmed it."""
    counts: dict[str, list[int]] = {}
    for model, predicted, label in rows:
        seen = counts.setdefault(model, [0, 0])
        seen[0] += 1
        seen[1] += str(predicted) == str(label)
    return {model: (n, right) for model, (n, right) in counts.items()}


class TooManyCorrections(ValueError):
    """The client has made per_hour corrections in the last hour, as many as one client may."""

    def __init__(self, per_hour: int) -> None:
        super().__init__(per_hour)
        self.per_hour = per_hour


# Both have INSERT ... ON CONFLICT DO UPDATE, which record() relies on.
UPSERT_DIALECTS = {"sqlite": sqlite, "postgresql": postgresql}


def make_engine(url: str = DEFAULT_DATABASE_URL) -> Engine:
    if not url.startswith(tuple(UPSERT_DIALECTS)):
        raise ValueError(
            f"DATABASE_URL {url.split(':', 1)[0]}: is not supported; use sqlite:/// or postgresql+psycopg://"
        )
    if url.startswith("sqlite"):
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        # Several workers write to one file: wait for the lock rather than fail, and let readers run
        # beside a writer (WAL). Committed rows survive a killed process.
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
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

    def __enter__(self) -> "FeedbackStore":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections: left to the garbage collector, PostgreSQL's are dropped unclosed."""
        self.engine.dispose()

    def record(self, seen: Seen, label: int | str, client: str, per_hour: int) -> int:
        """Store a correction, or replace the label of an earlier one for the same prediction; returns its id.

        One upsert, so that the same correction replayed through two replicas at once still makes one row. A
        changed label waits for review again. A whole number's correction keeps its digits' crops, its number
        read and its right number. Raises TooManyCorrections once the client has made per_hour in the last
        hour: counted in the database, so the bound holds across workers and replicas (give or take the
        requests in flight at the same moment).
        """
        table = number_corrections if seen.number else corrections
        image = {"crops_png": seen.image_png} if seen.number else {"image_png": seen.image_png}
        now = datetime.now(UTC)
        row = (
            UPSERT_DIALECTS[self.engine.dialect.name]
            .insert(table)
            .values(
                prediction_id=seen.key,
                predicted=seen.predicted,
                confidence=seen.confidence,
                label=label,
                model_sha256=seen.model_sha256,
                created_at=now,
                client=client,
                review=PENDING,
                **image,
            )
        )
        upsert = row.on_conflict_do_update(
            index_elements=[table.c.prediction_id], set_={"label": label, "review": PENDING}
        )
        recent = union_all(
            *(
                select(t.c.id).where(and_(t.c.client == client, t.c.created_at > now - timedelta(hours=1)))
                for t in TABLES
            )
        ).subquery()
        with self.engine.begin() as conn:
            if conn.execute(select(func.count()).select_from(recent)).scalar_one() >= per_hour:
                raise TooManyCorrections(per_hour)
            return int(conn.execute(upsert.returning(table.c.id)).scalar_one())

    def stats(self) -> dict[str, Any]:
        """The number of corrections, per true digit and per digit the model had said, and of whole numbers."""
        with self.engine.connect() as conn:
            by: dict[str, dict[int, int]] = {
                name: dict(conn.execute(select(column, func.count()).group_by(column)).all())
                for name, column in (("by_label", corrections.c.label), ("by_predicted", corrections.c.predicted))
            }
            numbers = conn.execute(select(func.count()).select_from(number_corrections)).scalar_one()
        return {"total": sum(by["by_label"].values()), "numbers": numbers} | {
            name: {str(d): counts.get(d, 0) for d in range(10)} for name, counts in by.items()
        }

    def all(self, review: str = ACCEPTED) -> list[tuple[np.ndarray, int]]:
        """Every corrected digit with this review, as the model saw it (28x28 uint8) with its right label, oldest
        first: the single digits, then the digits of whole numbers whose right number has as many digits as
        were read."""
        with self.engine.connect() as conn:
            digits = conn.execute(
                select(corrections.c.image_png, corrections.c.label)
                .where(corrections.c.review == review)
                .order_by(corrections.c.id)
            )
            out = [(_pixels(png), int(label)) for png, label in digits]
            numbers = conn.execute(
                select(number_corrections.c.crops_png, number_corrections.c.label)
                .where(number_corrections.c.review == review)
                .order_by(number_corrections.c.id)
            )
            for png, label in numbers:
                out += labelled_digits(_pixels(png), label, number=True)
        return out

    def listed(self, review: str = PENDING) -> list[Listed]:
        """The corrections with this review, oldest first, each with how many its client has sent in all."""
        with self.engine.connect() as conn:
            sent: dict[str | None, int] = dict(
                conn.execute(
                    select(text("client"), func.count())
                    .select_from(union_all(*(select(t.c.client) for t in TABLES)).subquery())
                    .group_by(text("client"))
                ).all()
            )
            found = []
            for table in TABLES:
                c = table.c
                image = c.crops_png if table is number_corrections else c.image_png
                rows = conn.execute(
                    select(c.id, image, c.predicted, c.label, c.confidence, c.client, c.model_sha256, c.created_at)
                    .where(c.review == review)
                    .order_by(c.id)
                )
                found += [
                    Listed(
                        table.name,
                        i,
                        png,
                        str(predicted),
                        str(label),
                        confidence,
                        sent.get(client, 0),
                        model_id(sha),
                        created if created.tzinfo else created.replace(tzinfo=UTC),  # SQLite keeps no zone
                    )
                    for i, png, predicted, label, confidence, client, sha, created in rows
                ]
        return found

    def by_model(self, review: str = ACCEPTED) -> dict[str, tuple[int, int]]:
        """For each model (model_id), how many of its predictions were corrected with this review, and in how many
        of those the user confirmed its answer: its accuracy on what users chose to correct."""
        with self.engine.connect() as conn:
            rows = [
                (model_id(sha), predicted, label)
                for table in TABLES
                for sha, predicted, label in conn.execute(
                    select(table.c.model_sha256, table.c.predicted, table.c.label).where(table.c.review == review)
                )
            ]
        return tally(rows)

    def judge(self, table: str, row: int, verdict: str) -> None:
        """Record an operator's verdict, ACCEPTED or REJECTED, on one correction."""
        target = next(t for t in TABLES if t.name == table)
        with self.engine.begin() as conn:
            conn.execute(update(target).where(target.c.id == row).values(review=verdict))


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"))
