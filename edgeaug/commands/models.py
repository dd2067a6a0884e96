"""The commands on models: ``target from-onnx``, ``target from-tflite``, ``adapt-model`` and ``eval``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from edgeaug.commands.common import Color, Layout, Split, WordSize, model_errors, numbers, size_arg, value

target_app = typer.Typer(no_args_is_help=True, help="Derive device target profiles from models.")

_T_OUTPUT = typer.Option(
    None, "-o", "--output", help="TOML to write; default ./NAME.toml (pass it to build --target as a path)."
)
_T_NAME = typer.Option(
    None,
    "--name",
    help="Profile name, the file ./NAME.toml when -o is not given (default: the model's file name).",
)
_T_SIZE = typer.Option(
    None, "--size", metavar="HxW", callback=size_arg, help="HxW for dynamic height/width, e.g. 224x224."
)
_T_MEAN = typer.Option(
    None, "--mean", help="Per-channel mean, e.g. 0.485,0.456,0.406 (default: model metadata 'mean', else 0)."
)
_T_STD = typer.Option(None, "--std", help="Per-channel std (default: model metadata 'std', else 1).")
_T_COLOR = typer.Option(None, "--color", help="Colour order (default: metadata 'color', else by channels).")
_T_LAYOUT = typer.Option(None, "--layout", help="The model's layout when the shape is ambiguous.")
_T_INPUT = typer.Option(None, "--input", help="Which input, for multi-input models.")
_T_DEVICE = typer.Option(None, "--device", help="Device name stored in the profile.")
_T_ARCH = typer.Option("any", "--arch", help="Device arch: aarch64, armv7l, x86_64 or any.")
_T_WORD = typer.Option(WordSize["64"], "--word-size", help="The device OS's word size in bits.")


def _target_command(module: str, writer: str, model_help: str, doc: str):
    """A ``target from-*`` command: the same options, the model read by ``module.writer`` (imported when run)."""

    def command(
        model: Path = typer.Argument(..., help=model_help),
        output: Optional[Path] = _T_OUTPUT,
        name: Optional[str] = _T_NAME,
        size: Optional[str] = _T_SIZE,
        mean: Optional[str] = _T_MEAN,
        std: Optional[str] = _T_STD,
        color: Optional[Color] = _T_COLOR,
        layout: Optional[Layout] = _T_LAYOUT,
        input_name: Optional[str] = _T_INPUT,
        device: Optional[str] = _T_DEVICE,
        arch: str = _T_ARCH,
        word_size: WordSize = _T_WORD,
    ) -> None:
        import importlib

        write = getattr(importlib.import_module(module), writer)
        style, dev = (value(color), value(layout)), (device, arch, int(word_size.value))
        _model_target(write, model, output, name, size, mean, std, style, input_name, dev)

    command.__doc__ = doc
    return command


target_from_onnx = _target_command(
    "edgeaug.models.from_model",
    "write_target",
    "The ONNX model (float, QDQ-quantized, or adapted).",
    "Write a target profile read from the model: input name, shape, dtype, layout, quantization.",
)
target_from_tflite = _target_command(
    "edgeaug.models.litert",
    "write_tflite_target",
    "The .tflite (LiteRT) model: float, or full-integer quantized.",
    """Write a target profile read from a .tflite model's input tensor: name, shape, dtype, scale, zero point.

    Normalization comes from --mean/--std, else the model's metadata, else the input's quantized range.
    No interpreter is needed (the flatbuffer is read directly).
    """,
)


def _model_target(write, model, output, name, hw, mean, std, style, input_name, dev_args):
    """Derive, write and report a target with ``write(model, out, **kw)``; the models' warnings become lines.

    The default output is ./NAME.toml: never the shipped profiles' folder, even when run from a checkout.
    """
    import warnings

    (color, layout), (device, arch, word_size) = style, dev_args
    with model_errors(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        name = name or model.stem
        out = output or Path(f"{name}.toml")
        dev = {"arch": arch, "word_size": word_size, **({"name": device} if device else {})}
        t = write(
            model,
            out,
            name=name,
            size=hw,
            mean=numbers(mean, "--mean"),
            std=numbers(std, "--std"),
            color=color,
            layout=layout,
            input_name=input_name,
            device=dev,
        )
    for w in caught:
        typer.secho(f"warning: {w.message}", fg="yellow", err=True)
    q = f", scale {t.scale!r}, zero point {t.zero_point}" if t.dtype in ("uint8", "int8") else ""
    typer.echo(f"wrote {out}: {t.input_name} {t.dtype} {t.layout} {t.height}x{t.width} {t.color}{q}")


def adapt_model(
    model: Path = typer.Argument(..., help="A QDQ-quantized model (or a float one with --insert-preprocess)."),
    output: Path = typer.Option(..., "-o", "--output", help="The adapted model to write."),
    insert_preprocess: bool = typer.Option(
        False, "--insert-preprocess", help="Float model: take uint8 NHWC pixels (Cast, normalize, Transpose inserted)."
    ),
    mean: Optional[str] = typer.Option(
        None, "--mean", help="With --insert-preprocess: per-channel mean (default: metadata, else 0)."
    ),
    std: Optional[str] = typer.Option(
        None, "--std", help="With --insert-preprocess: per-channel std (default: metadata, else 1)."
    ),
    layout: Optional[Layout] = typer.Option(None, "--layout", help="The model's layout when ambiguous."),
    input_name: Optional[str] = typer.Option(None, "--input", help="Which input, for multi-input models."),
) -> None:
    """Make a model take the pack's integer tensor directly, with outputs bit-identical to the original's.

    A uint8 QDQ model loses its input QuantizeLinear; an int8 one keeps it behind a small dequantizing head,
    so onnxruntime picks the same kernels as for the original on every CPU.
    """
    from edgeaug.models.adapt import adapt_model as run_adapt

    with model_errors():
        r = run_adapt(
            model, output, insert_preprocess, numbers(mean, "--mean"), numbers(std, "--std"), value(layout), input_name
        )
    what = "input QuantizeLinear removed" if r.kind == "qdq" else "pixel preprocessing inserted"
    typer.echo(
        f"wrote {output}: {what}; input {r.input_name} is {r.dtype} {list(r.shape)}, "
        f"scale {r.scale!r}, zero point {r.zero_point}"
    )
    typer.echo(f"next: edgeaug target from-onnx {output} -o {output.stem}.toml")


def eval_pack(
    pack: Path = typer.Argument(..., help="The pack file."),
    model: Path = typer.Option(
        ..., "--model", "-m", help="An ONNX or .tflite (LiteRT) model whose input is the pack's tensor."
    ),
    split: Optional[Split] = typer.Option(
        None, "--split", help="The split to evaluate (default: val when the pack has one)."
    ),
    batch: int = typer.Option(32, "--batch", help="Batch size (a fixed-batch model uses its own)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Accuracy of a classifier on a pack split and samples/s, batches fed with no conversion."""
    split = value(split)
    with model_errors():
        if model.suffix.lower() == ".tflite":
            from edgeaug.models.litert import evaluate_tflite as evaluate
        else:
            from edgeaug.models.evaluate import evaluate
        r = evaluate(pack, model, split, batch)
    if as_json:
        typer.echo(json.dumps(r, indent=2, sort_keys=True))
        return
    acc = (
        "no class labels"
        if r["accuracy"] is None
        else f"accuracy {100 * r['accuracy']:.2f}% ({r['correct']}/{r['labelled']})"
    )
    typer.echo(
        f"{model.name} on {pack.name} [{r['split']}]: {acc}; {r['samples_per_s']:.0f} samples/s "
        f"({r['model_samples_per_s']:.0f} inference only, batch {r['batch']})"
    )
