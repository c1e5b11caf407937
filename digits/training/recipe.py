"""The training recipe: every setting that decides the weights, as one dataclass written into the weights'
metadata and read back from it. Presets are data: the shipped recipe, a fast one, and fine-tuning."""

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


def setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Recipe:
    epochs: int = setting(110, "MLP epochs")
    fast: bool = setting(False, "no teacher and fewer epochs: a few minutes on a CPU")
    teacher_epochs: int = setting(25, "CNN teacher epochs, 0 for no teacher")
    kd_alpha: float = setting(0.8, "weight of the distillation term")
    kd_temperature: float = setting(4.0, "distillation temperature")
    batch_size: int = setting(128, "training batch size")
    lr: float = setting(3e-3, "peak learning rate of the one-cycle schedule")
    weight_decay: float = setting(1e-4, "AdamW weight decay")
    dropout: float = setting(0.0, "MLP dropout after each hidden layer")
    label_smoothing: float = setting(0.0, "label smoothing")
    affine: float = setting(0.5, "strength of the random affine transform: 1 is ±12°, ±15%% scale, ±0.25 shear, ±2 px")
    elastic: float = setting(1.0, "elastic distortion in pixels, 0 for none")
    pens: float = setting(
        0.5, "chance that a training digit is taken as drawn again with another pen (redraw.py), 0 for never"
    )
    stroke: float = setting(0.0, "stroke width augmentation, 0 to 1")
    blur: float = setting(0.0, "Gaussian blur up to this sigma in pixels, 0 for none")
    outliers: int = setting(30000, "things that are not digits (outliers.py) for the MLP to learn to doubt, 0 for none")
    outlier_weight: float = setting(1.0, "weight of the loss that pushes the answer on them towards uniform")
    ema_decay: float = setting(0.999, "decay of the weights' moving average")
    val_size: int = setting(5000, "training images held out for validation")
    real_val: int = setting(
        1000, "validation digits also drawn as uploads (redraw.py) for the choice of checkpoint and threshold"
    )
    subset: int = setting(0, "train on only this many images, for smoke tests (0: all)")
    seed: int = setting(0, "random seed")
    feedback: bool = setting(False, "fine-tuned on the stored user corrections")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Recipe":
        """The recipe recorded with weights; a setting they predate takes its default."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})


# The presets, each a change from the shipped recipe.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "fast": {"fast": True, "teacher_epochs": 0, "epochs": 40},
    "feedback": {"feedback": True, "epochs": 3},
}


def preset(name: str, **changes: Any) -> Recipe:
    """A preset, with some settings changed (those given as None keep the preset's)."""
    return Recipe(**(PRESETS[name] | {k: v for k, v in changes.items() if v is not None}))
