"""The report's HTML pieces: escaping (every string from data goes through `esc`), embedded PNGs and tables."""
import base64
import html
import io
from pathlib import Path

from cnncodes.features.outputs import write_atomically


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def png(fig, path: Path) -> str:
    import matplotlib.pyplot as plt  # matplotlib (0.4 s) only where figures are drawn; build_report set its backend

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    write_atomically(path, buf.getvalue())
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}" alt="{esc(path.name)}">'


def table(header, rows) -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{trs}</table>"


def run_name(run: dict) -> str:
    return Path(str(run.get("run", ""))).name
