"""`cnncodes layers`: a backbone's layer names and output shapes, for --layer."""

import click

from cnncodes.options import SIZE, backbone_choice, native_size


@click.command()
@click.argument("backbone", type=backbone_choice())
@click.option("--size", type=SIZE, help="input side [the backbone's native size]")
def layers(backbone, size):
    """List a backbone's layer names and output shapes (for --layer); block outputs, where a cut keeps a whole
    representation, are marked."""
    from cnncodes.pipeline.backbones import block_outputs, build_backbone, check_size

    size = size or native_size(backbone)
    check_size(backbone, size)
    model = build_backbone(backbone, "none", size)
    ends = block_outputs(model)
    for layer in model.layers:
        click.echo(f"{layer.name}\t{tuple(layer.output.shape[1:])}" + ("\tblock output" if layer.name in ends else ""))
