"""The ``camera`` commands: camera profiles for the ``camera`` recipe op."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgeaug.commands.common import errors

camera_app = typer.Typer(no_args_is_help=True, help="Camera profiles for the `camera` recipe op.")


@camera_app.command("from-opencv")
def from_opencv(
    calibration: Path = typer.Argument(..., help="OpenCV calibration output (cv2.FileStorage YAML or XML)."),
    output: Path = typer.Option(..., "-o", "--output", help="Camera profile TOML to write."),
    name: Optional[str] = typer.Option(None, "--name", help="Profile name (default: the output file's name)."),
) -> None:
    """Convert an OpenCV calibration (camera_matrix, distortion_coefficients, image_width/height) to a profile.

    Noise, white balance and JPEG get generic estimates: edit them in the written TOML.
    Use it in a recipe as: [[ops]] op = "camera", profile = "mycam.toml" (relative to the recipe).
    """
    from edgeaug.config.camera import camera_from_opencv, camera_toml

    with errors():
        prof = camera_from_opencv(calibration, name or output.stem)
        note = (
            f"Camera profile converted by `edgeaug camera from-opencv` from {calibration.name}.\n"
            "lens: from the calibration.  noise, white_balance, jpeg: generic ESTIMATES, edit them for your camera."
        )
        output.write_text(camera_toml(prof, note), encoding="utf-8")
    typer.echo(
        f"wrote {output}: {prof.image_size[0]}x{prof.image_size[1]}, {len(prof.distortion)} distortion coefficients"
    )


@camera_app.command("list")
def list_profiles() -> None:
    """The shipped camera profiles."""
    from edgeaug.config.camera import list_cameras, load_camera

    for n in list_cameras():
        typer.echo(f"{n}: {load_camera(n).description}")
