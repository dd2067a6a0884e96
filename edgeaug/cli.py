"""The ``edgeaug`` command: a thin typer app that assembles the subcommands of :mod:`edgeaug.commands`.

Each command imports the library modules it uses inside its function, so that
``edgeaug --help`` and light commands start without loading numpy and OpenCV.
"""

from __future__ import annotations

import typer

from edgeaug.commands import camera, inspect, models, packs
from edgeaug.commands.common import LineProgress  # noqa: F401  (progress lines; tests patch it)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Offline, deterministic data augmentation for edge devices.\n\n"
    "Build a pack of augmented, already-quantized model inputs on the workstation; "
    "load it on the device with numpy and lmdb only (python -m edgeaug.loader).",
)

for command in (packs.build, inspect.inspect, packs.verify, packs.targets, packs.recipes, packs.ops, packs.demo):
    app.command()(command)
app.command("bundle-loader")(packs.bundle_loader)
models.target_app.command("from-onnx")(models.target_from_onnx)
models.target_app.command("from-tflite")(models.target_from_tflite)
app.add_typer(models.target_app, name="target")
app.add_typer(camera.camera_app, name="camera")
app.command("adapt-model")(models.adapt_model)
app.command("eval")(models.eval_pack)
# INDEX may be negative (-1: the last record): "-1" is an argument, not an unknown option.
app.command(context_settings={"ignore_unknown_options": True})(inspect.explain)
app.command()(inspect.preview)

if __name__ == "__main__":
    app()
