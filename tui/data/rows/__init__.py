"""What the tables show, built from API objects: pure functions, no I/O and no Textual.

One module per table, as `tui/widgets/` has one widget per table: `flavor`, `device`, `route`,
`request`, `provider`, `event`; `cells` holds what they share. Every row knows its cells (text
plus a sort value and a tone), the facts the detail pane lists and the objects it came from.
"""

from __future__ import annotations

from tui.data.rows.device import DeviceRow
from tui.data.rows.flavor import FlavorRow
from tui.data.rows.provider import ProviderRow
from tui.data.rows.request import RequestRow
from tui.data.rows.route import RouteTargetRow

AnyRow = FlavorRow | DeviceRow | RouteTargetRow | RequestRow | ProviderRow
"""A row of any table the detail pane can show."""
