"""Train the 784-256-128-10 MLP on MNIST and write weights/mnist_mlp.safetensors.

    python train.py                          # the shipped recipe (seed 0): CNN teacher, then the distilled MLP
    python train.py --fast                   # no teacher, fewer epochs: past 99% in a few minutes on 2 cores
    python train.py --epochs 1 --subset 2000 --out /tmp/smoke.safetensors
    python train.py evaluate [--weights weights/mnist_mlp.safetensors]
    python train.py remeasure                # threshold and figures chosen and recorded again, for new preprocessing
    python train.py feedback                 # fine-tune on the corrections an operator accepted (review)
    python train.py feedback --folder corrections/   # or on those exported with review --export
    python train.py promote weights/feedback.safetensors   # serve those weights from the next start
    python train.py export out/              # the accepted corrections as MNIST-style IDX files

The data is fetched and verified first if it is missing (digits/training/dataset.py).
5,000 training images are held out for validation. 1,000 of them are also
drawn as people's uploads arrive (redraw.py: other pens, the page's canvas,
photos of paper) and read through the service's preprocessing; the two halves
pick every setting and the checkpoint together. The test set is only ever used
to report the final accuracy.

Each training digit is also drawn once more with another pen, from a
ballpoint's to a marker's (redraw.redrawn()); a share of every batch takes that
drawing instead. Augmentation runs on whole batches on the training device
(digits/training/augment.py). The teacher, a small CNN (teacher.py), trains on the same
augmentation; the MLP then learns from its softened outputs on the very
batches it sees, mixed with the true labels. The recipe is digits/training/recipe.py,
and is written into the weights' metadata.
"""

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch

from digits.feedback.store import DEFAULT_DATABASE_URL
from digits.inference.weights import DEFAULT_WEIGHTS
from digits.paths import REPORTS
from digits.training import dataset
from digits.training.finetune import (
    FEEDBACK_WEIGHTS,
    accuracy_by_model,
    as_tensors,
    export_feedback,
    from_database,
    from_folder,
    learn_from_feedback,
    nothing_to_learn,
    promote,
)
from digits.training.finish import Output, finish
from digits.training.loop import evaluate, fit
from digits.training.recipe import Recipe, preset
from digits.training.remeasure import remeasure
from digits.training.splits import load_splits, to_float, with_outliers
from digits.training.teacher import TeacherCNN
from model import MLP, load_model

REPORT = REPORTS / "latest"
COMMANDS = ("train", "evaluate", "remeasure", "feedback", "promote", "export")
PRESET_FLAGS = {"fast", "feedback"}  # chosen by --fast and by the feedback command, not set one by one


def recipe_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for each setting of the recipe, from the dataclass: its default comes from the preset."""
    for f in dataclasses.fields(Recipe):
        if f.name not in PRESET_FLAGS:
            help_ = f"{f.metadata['help']} (default: {f.default})"
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=None, help=help_)
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="training device (default: auto)"
    )
    parser.add_argument("--quiet", action="store_true", help="a line per epoch instead of progress bars (default: off)")


def report_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--report", type=Path, default=REPORT, help="folder for the training report (default: reports/latest)"
    )
    parser.add_argument("--no-report", action="store_true", help="skip the report and its measurements (default: off)")
    parser.add_argument(
        "--report-digits",
        type=int,
        default=2000,
        help="test digits for the report's upload and rejection figures (default: 2000)",
    )


def weights_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--weights", type=Path, default=DEFAULT_WEIGHTS, help=f"{what} (default: weights/mnist_mlp.safetensors)"
    )


def database_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        help="where the corrections are (default: $DATABASE_URL, else SQLite data/feedback.db)",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")
    train = commands.add_parser("train", help="train the MLP (the default command)")
    train.add_argument("--fast", action="store_true", help="no teacher and 40 epochs (default: off)")
    recipe_flags(train)
    report_flags(train)
    train.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_WEIGHTS,
        help="weights file to write (default: weights/mnist_mlp.safetensors)",
    )
    evaluate_ = commands.add_parser("evaluate", help="the test accuracy of --weights")
    weights_flag(evaluate_, "weights to evaluate")
    evaluate_.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="device (default: auto)")
    measure = commands.add_parser(
        "remeasure",
        help="choose --weights' uncertain threshold on validation and measure its upload and not-a-digit figures "
        "with today's preprocessing, record them in its metadata and write its report again; the tensors are kept",
    )
    weights_flag(measure, "weights to measure")
    report_flags(measure)
    feedback = commands.add_parser("feedback", help="fine-tune --weights on the accepted user corrections")
    recipe_flags(feedback)
    report_flags(feedback)
    weights_flag(feedback, "weights to fine-tune")
    database_flag(feedback)
    feedback.add_argument(
        "--folder",
        type=Path,
        metavar="DIR",
        help="learn from the corrections that `python -m digits.feedback.review --export DIR` wrote, instead of "
        "the database's (default: off)",
    )
    feedback.add_argument(
        "--out", type=Path, default=FEEDBACK_WEIGHTS, help="weights to write (default: weights/feedback.safetensors)"
    )
    promote_ = commands.add_parser("promote", help="make WEIGHTS (from feedback) the served weights, checked first")
    promote_.add_argument("path", type=Path, metavar="WEIGHTS")
    export = commands.add_parser("export", help="write the accepted corrections as IDX files into DIR")
    export.add_argument("folder", type=Path, metavar="DIR")
    database_flag(export)
    argv = sys.argv[1:] if argv is None else argv
    # Training is the default: `python train.py --fast` as before the commands.
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["train", *argv]
    return parser.parse_args(argv)


def recipe_of(args: argparse.Namespace) -> Recipe:
    name = "feedback" if args.command == "feedback" else "fast" if args.fast else "default"
    return preset(
        name, **{f.name: getattr(args, f.name) for f in dataclasses.fields(Recipe) if f.name not in PRESET_FLAGS}
    )


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def main(args: argparse.Namespace) -> None:
    if args.command == "export":
        export_feedback(args.folder, args.database_url)
        return
    if args.command == "promote":
        promote(args.path)
        return
    if args.command == "remeasure":
        remeasure(args.weights, None if args.no_report else args.report, args.report_digits)
        return
    device = pick_device(args.device)
    if args.command == "evaluate":
        test_x, test_y = dataset.load(train=False)
        _, acc = evaluate(load_model(args.weights).to(device), to_float(test_x, device), test_y.to(device))
        print(f"{args.weights}: test accuracy {acc:.2%} on {len(test_x):,} images")
        return

    recipe = recipe_of(args)
    output = Output(args.out, None if args.no_report else args.report, args.report_digits)
    torch.manual_seed(recipe.seed)
    g = torch.Generator(device=device).manual_seed(recipe.seed)
    if args.command == "feedback":
        found = from_folder(args.folder) if args.folder else from_database(args.database_url)
        accuracy_by_model(found)
        if not found.digits:
            nothing_to_learn(None if args.folder else args.database_url)
            return
        corrections = as_tensors(found, device)
        data = with_outliers(recipe, load_splits(recipe, device))
        learn_from_feedback(recipe, data, corrections, g, args.weights, output, args.quiet)
        return
    data = with_outliers(recipe, load_splits(recipe, device))

    start = time.perf_counter()
    teacher, results = None, {}
    if recipe.teacher_epochs:
        teacher = TeacherCNN().to(device)
        state, teacher_history = fit(
            teacher, data, recipe, recipe.teacher_epochs, recipe.lr, g, name="teacher", quiet=args.quiet
        )
        teacher.load_state_dict(state)
        teacher.eval()
        results["teacher_val_accuracy"] = round(max(h["val_acc"] for h in teacher_history), 4)
        results["teacher_test_accuracy"] = round(evaluate(teacher, data.test_x, data.test_y)[1], 4)
        print(f"teacher: validation {results['teacher_val_accuracy']:.2%}, test {results['teacher_test_accuracy']:.2%}")

    model = MLP(dropout=recipe.dropout).to(device)
    not_digits = data.outlier_x if recipe.outliers else None
    state, history = fit(
        model, data, recipe, recipe.epochs, recipe.lr, g, teacher, not_digits=not_digits, quiet=args.quiet
    )
    finish(state, history, data, recipe, output, time.perf_counter() - start, results)


if __name__ == "__main__":
    main(parse_args())
