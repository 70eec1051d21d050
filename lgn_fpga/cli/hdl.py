"""``lgn-fpga hdl``: Verilog and RTLIL of the classifier core."""
from __future__ import annotations

import time

import click


def _verilog_name(ctx, param, value):
    if not value.isidentifier() or not value.isascii():
        raise click.BadParameter(f"{value!r} is not a Verilog identifier: use letters, digits and _, "
                                 "not starting with a digit")
    return value


@click.command("hdl")
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False), required=True,
              help="Directory for NAME.v, NAME.il and NAME.json (created if missing).")
@click.option("--stages", type=click.IntRange(min=1), default=1, show_default=True,
              help="Gate layers (and argmax comparator levels) per register stage.")
@click.option("--popcount-levels", type=click.IntRange(min=1), default=None,
              help="Full-adder levels per register stage in the popcount  [default: 2 x stages]")
@click.option("--name", default="lgn_core", show_default=True, callback=_verilog_name,
              help="Verilog module name and file stem.")
@click.option("--inputs", type=click.Choice(["bits", "bytes"]), default="bits", show_default=True,
              help="bits: the core (thermometer bits in); bytes: binarizer + core (pixel bytes in).")
@click.option("--no-verilog", is_flag=True, help="Write only RTLIL and JSON (skips the yosys run).")
def hdl(model, out_dir, stages, popcount_levels, name, inputs, no_verilog):
    """Write the hardware of netlist MODEL (.lgn) as Verilog and RTLIL.

    \b
    Ports: clk, rst, i__payload/i__valid/i__ready (one image per clock),
    o__payload/o__valid/o__ready (the predicted class, LATENCY cycles later).
    """
    from ..netlist.format import load
    from ..hdl.export import export_core
    from .netlist import echo_optimization_note

    net = load(model)
    echo_optimization_note(net, model)
    t0 = time.perf_counter()
    r = export_core(net, out_dir, stages=stages, popcount_levels=popcount_levels, name=name, inputs=inputs,
                    verilog=not no_verilog)
    info = r.info
    click.echo(f"{model}: {net.n_gates} gates, {net.depth} layers, {net.n_classes} classes -> "
               f"latency {info['latency']} cycles ({', '.join(f'{k} {v}' for k, v in info['latency_parts'].items())}), "
               f"{time.perf_counter() - t0:.1f} s")
    for p in ([r.verilog] if not no_verilog else []) + [r.rtlil, r.meta]:
        click.echo(f"  wrote {p}")
