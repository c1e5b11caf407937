"""Review users' corrections before the model learns from them: they come from strangers, so none is trusted.

    python -m digits.feedback.review            # each pending correction in turn: accept, reject, skip or quit
    python -m digits.feedback.review --list pending   # one line each (pending, accepted or rejected)
    python -m digits.feedback.review --accept digit-3 number-1 --reject digit-4
    python -m digits.feedback.review --sheet pending.png   # the pending ones as one picture, judged at a glance
    python -m digits.feedback.review --export corrections/  # the accepted ones as PNGs, a CSV and a manifest

The rule: `train.py feedback` learns only from corrections an operator accepted here. Accept one when
the image plainly shows the label as a digit a person could have written; reject it when it shows another
digit, no digit, or when one client sent many corrections of one kind (the count beside each says how many
that client sent in all; the client is a keyed hash of its address, never the address).
DATABASE_URL names the database, as for the service.
"""

import argparse
import io
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from digits.feedback.export import export
from digits.feedback.store import ACCEPTED, DEFAULT_DATABASE_URL, PENDING, REJECTED, FeedbackStore, Listed


def describe(c: Listed) -> str:
    return (
        f"{c.name}: model {c.model} read {c.predicted} ({c.confidence:.0%} sure), the user says {c.label}; "
        f"{c.client_total} correction{'s' if c.client_total != 1 else ''} from this client"
    )


def pixels(c: Listed) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(c.image_png)).convert("L"))


def in_terminal(image: np.ndarray) -> str:
    """The image in a terminal, two pixel rows to a line of half blocks in 24 grey levels, ink bright on black."""
    grey = 232 + (image.astype(np.int32) * 23 // 255)
    if len(grey) % 2:
        grey = np.vstack([grey, np.full((1, grey.shape[1]), 232)])
    return "\n".join(
        "".join(f"\x1b[38;5;{top}m\x1b[48;5;{bottom}m▀" for top, bottom in zip(upper, lower, strict=True)) + "\x1b[0m"
        for upper, lower in zip(grey[::2], grey[1::2], strict=True)
    )


def interactive(store: FeedbackStore) -> None:
    waiting = store.listed(PENDING)
    if not waiting:
        print("No correction is waiting for review.")
        return
    for i, c in enumerate(waiting, 1):
        print(f"\n{in_terminal(pixels(c))}\n[{i}/{len(waiting)}] {describe(c)}")
        answer = ""
        while answer not in ("a", "r", "s", "q"):
            answer = input("accept, reject, skip or quit? [a/r/s/q] ").strip().lower()[:1]
        if answer == "q":
            return
        if answer != "s":
            store.judge(c.table, c.id, ACCEPTED if answer == "a" else REJECTED)


def sheet(corrections: list[Listed], path: Path) -> None:
    """The corrections in a grid, each titled with its name, the model's reading and the user's label."""
    # Imported here: matplotlib is a training requirement, and the container has only the service's.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(8, max(1, len(corrections)))
    rows = -(-len(corrections) // columns) or 1
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.6, rows * 1.9), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, c in zip(axes.flat, corrections, strict=False):
        ax.imshow(pixels(c), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{c.name}\n{c.predicted} → {c.label}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {len(corrections)} corrections to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--list", choices=[PENDING, ACCEPTED, REJECTED], help="list these corrections (default: off)")
    parser.add_argument("--accept", nargs="+", default=[], metavar="NAME", help="accept these (default: none)")
    parser.add_argument("--reject", nargs="+", default=[], metavar="NAME", help="reject these (default: none)")
    parser.add_argument("--sheet", type=Path, help="draw the pending corrections into this PNG (default: off)")
    parser.add_argument(
        "--export",
        type=Path,
        metavar="DIR",
        help="add the accepted corrections not yet in DIR to it, as a dataset (digits/feedback/export.py; "
        "default: off)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        help="where the corrections are (default: $DATABASE_URL, else SQLite data/feedback.db)",
    )
    args = parser.parse_args()
    with FeedbackStore(args.database_url) as store:
        if args.list:
            for c in store.listed(args.list):
                print(describe(c))
        elif args.accept or args.reject:
            known = {c.name: c for review in (PENDING, ACCEPTED, REJECTED) for c in store.listed(review)}
            unknown = [n for n in args.accept + args.reject if n not in known]
            if unknown:
                sys.exit(f"no such correction: {', '.join(unknown)}; names are as --list shows them, such as digit-3")
            for verdict, names in ((ACCEPTED, args.accept), (REJECTED, args.reject)):
                for n in names:
                    store.judge(known[n].table, known[n].id, verdict)
            print(f"{len(args.accept)} accepted, {len(args.reject)} rejected")
        elif args.sheet:
            sheet(store.listed(PENDING), args.sheet)
        elif args.export:
            added = export(store.listed(ACCEPTED), args.export)
            print(f"added {added} accepted correction{'s' if added != 1 else ''} to {args.export}")
        else:
            interactive(store)


if __name__ == "__main__":
    main()
