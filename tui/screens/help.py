"""Key bindings, the filter syntax and what each view shows."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from tui.data.filter_text import ALIASES

HELP = f"""\
# fluidos-sensors TUI

Live views of every cluster given on the command line (watches, no polling), with the
recent Events of every cluster at the bottom. A cluster
whose API server does not answer is marked **unreachable** in the top bar with the reason;
the others keep working and it reconnects by itself (press **R** to retry now).

## Keys

| key | does |
|---|---|
| `1` `2` `3` `4` | Flavors, Routes, Requests, Devices |
| `/` | type a flavor filter (Enter: back to the table, Esc: clear it) |
| `s` / `S` | sort by the next column / reverse the order (or click a column header) |
| `d` | hide or show the detail pane |
| `n` | request a sensor like the selected flavor (asks for the delivery endpoint) |
| `x` | Requests: delete the selected request; Routes: remove the selected target |
| `R` | reconnect every cluster now |
| `ctrl+p` | command palette (every action, and reconnecting one cluster) |
| `?` | this help |
| `q` | quit |

Arrows, PageUp/PageDown, Ctrl+Home/Ctrl+End move in a table (Home/End scroll sideways);
the detail pane on the right shows the selected row (its facts, its recent Events and the
full object); Tab moves between panes.

## Flavor filter

Words separated by spaces, all of which must hold, exactly as `fluidos-sensors flavors
list` and the REAR gateway filter (the same code), named as the commands' options are
(`--type humidity --max-latency 16` is `type=humidity latency<=16`):

| word | means |
|---|---|
| `type=humidity` | measures humidity (`type=a,b`: measures both) |
| `manufacturer=STMicroelectronics`, `model=HTS221` | text, case-insensitive, whole value |
| `category=...`, `market=...`, `node=...` | the same |
| `latency<=16`, `latency>=1`, `latency=15` | declared latency in ms (`latency<=0.1s` works too) |
| `rate>=10` (`sampling_rate`) | sampling rate in Hz (`1kHz`) |
| `accuracy<=0.5` | accuracy in the quantity's unit |
| `consumption<=5` | mW (`5mA` compares current ratings) |
| `observed-latency<=20` | latency measured on the data path, ms |
| `available=yes` | only flavors offered now (TUI only) |
| `cluster=provider-1` | only that cluster's flavors (TUI only) |
| `"manufacturer=ST Micro"` | quote words with spaces |

Bounds are inclusive (`<=`, `>=`). A REAR query works as well, pasted as one word:
`filter[sensor_type][match]=humidity&filter[latency][range][max]=16`. Short names:
{", ".join(f"`{k}`" for k in sorted(ALIASES))}.

## Views

- **Flavors**: Sensor Flavors of every provider: declared and observed performance,
  availability and how many consumers receive each one (targets of the SensorRoutes
  serving it).
- **Routes**: one row per target of each SensorRoute (edge node and topic): delivered,
  failed, queued and dropped readings, the rate and its history, the last error. A failing
  target is shown in red.
- **Requests**: SensorRequests of consumer clusters (phase, matched flavors, contracts,
  first data) and the SensorProviders they use.
- **Devices**: boards per edge node: online or offline, last seen, battery, latest values.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(HELP)
