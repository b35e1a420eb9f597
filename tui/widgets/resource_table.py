"""A DataTable keyed by object, updated in place: changed cells only, no redraw per event.

Rows come from `tui.data.rows` (cells with a sort value and a tone). A table keeps every row
it was given and shows those it `accepts` (the flavors table filters); an update touches
only the cells whose text or tone changed, adds and removes single rows, and rebuilds the
table only when a batch removes many rows at once (DataTable removes rows one by one in
linear time). Tones and row states are CSS component classes, styled in `styles.tcss`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets.data_table import Column, ColumnKey, RowDoesNotExist, RowKey

from tui.data.rows import AnyRow
from tui.data.rows.cells import Cell

TONES = ("good", "bad", "warn", "dim")


class TableCell:
    """A cell as the DataTable holds it: rendered as its Text, sorted by its value.

    It has no `__rich_measure__` on purpose: DataTable measures every cell of every new row
    through Rich (seconds for 10,000 rows); this table keeps the column widths itself from
    the texts' lengths instead.
    """

    __slots__ = ("plain", "sort_value", "style")

    def __init__(self, plain: str, style: Style | None, sort_value: tuple[Any, ...]) -> None:
        self.plain = plain
        self.style = style
        self.sort_value = sort_value

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # Only visible cells are ever rendered: their Text is made here, not for every row.
        yield Text(self.plain, style=self.style or "")

    def __str__(self) -> str:
        return self.plain


def _sort_key(value: object) -> tuple[Any, ...]:
    return getattr(value, "sort_value", (1, ""))


class ResourceTable(DataTable[TableCell]):
    """Rows keyed by object; `upsert_rows` applies a batch of changes in place."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        *DataTable.COMPONENT_CLASSES,
        *(f"resource-table--{tone}" for tone in TONES),
        "resource-table--failing",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "cycle_sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse sort", show=False),
    ]
    REBUILD_AT = 64
    """Removing more rows than this in one batch rebuilds the table instead."""
    CHUNK = 500
    """Rows applied per step; more wait for the next refresh."""

    def __init__(
        self,
        columns: tuple[tuple[str, str], ...],
        *,
        sort_column: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True)
        self.column_specs = columns
        self.rows_by_key: dict[str, AnyRow] = {}
        self._drawn: dict[str, tuple[dict[str, Cell], str]] = {}
        self.sort_column = sort_column
        self.sort_reverse = False
        self._styles: dict[str, Style] = {}
        self._widened = False
        self._backlog: dict[str, None] = {}  # row keys to apply, in order (an ordered set)
        self._scheduled = False
        self._resort = False
        self._keep: str | None = None  # the selected row, to select again once it is back
        self._column_objects: dict[str, Column] = {}
        self._combined: dict[tuple[str, str], Style | None] = {}

    def on_mount(self) -> None:
        for key, label in self.column_specs:
            self.add_column(label, key=key)
            self._column_objects[key] = self.columns[ColumnKey(key)]
        self._load_styles()
        self._update_title()

    def _load_styles(self) -> None:
        self._styles = {
            name: self.get_component_rich_style(f"resource-table--{name}", partial=True)
            for name in (*TONES, "failing")
        }

    # -------------------------------------------------------------------------------------
    # What subclasses decide

    def accepts(self, row: AnyRow) -> bool:
        """Whether a row is shown (the flavors table filters)."""
        return True

    def row_state(self, row: AnyRow) -> str:
        """A state that styles the whole row ("failing"), or ""."""
        return ""

    # -------------------------------------------------------------------------------------
    # Updates

    def upsert_rows(self, changes: Mapping[str, AnyRow | None]) -> None:
        """Apply new versions of rows (None: the row is gone), touching only what changed.

        Up to `CHUNK` rows are applied at once; the rest follow after the next refresh, so a
        batch of 10,000 rows never blocks keys and redraws for long.
        """
        if not changes:
            return
        leaving = 0
        for key, row in changes.items():
            if key in self._drawn and (row is None or not self.accepts(row)):
                leaving += 1
            if row is None:
                self.rows_by_key.pop(key, None)
            else:
                self.rows_by_key[key] = row
            self._backlog[key] = None
        if leaving > self.REBUILD_AT:
            self.rebuild()
        else:
            self._work()

    @property
    def pending(self) -> int:
        """Rows changed but not applied yet."""
        return len(self._backlog)

    def _take(self) -> Iterator[str]:
        """Backlog keys, oldest first, each removed as it is handed out."""
        while self._backlog:
            key = next(iter(self._backlog))
            del self._backlog[key]
            yield key

    def _work(self) -> None:
        self._scheduled = False
        if not self._backlog:
            return
        selected = self._keep or self.selected_key
        budget = self.CHUNK  # table operations, not keys: filtered-out rows cost nothing
        for key in self._take():
            row = self.rows_by_key.get(key)
            drawn = self._drawn.get(key)
            if row is None or not self.accepts(row):
                if drawn is not None:
                    del self._drawn[key]
                    with contextlib.suppress(RowDoesNotExist):
                        self.remove_row(key)
                    budget -= 1
                if budget <= 0:
                    break
                continue
            cells, state = row.cells(), self.row_state(row)
            if drawn is None:
                self.add_row(*self._render_row(cells, state), key=key)
                self._resort = True
            else:
                self._resort |= self._update_row(key, drawn, cells, state)
            self._drawn[key] = (cells, state)
            budget -= 1
            if budget <= 0:
                break
        more = bool(self._backlog)
        if not more:
            if self._resort and self.sort_column:
                self._sort(selected)
            elif selected is not None and selected in self._drawn:
                self._select(selected)
            self._resort = False
            self._keep = None
        else:
            self._keep = selected
            if not self._scheduled:
                self._scheduled = True
                self.call_after_refresh(self._work)
        self._apply_widths()
        self._update_title()

    def _update_row(
        self, key: str, drawn: tuple[dict[str, Cell], str], cells: dict[str, Cell], state: str
    ) -> bool:
        old_cells, old_state = drawn
        touched_sort = False
        for column, _ in self.column_specs:
            new = cells.get(column)
            if new == old_cells.get(column) and state == old_state:
                continue
            self.update_cell(key, column, self._table_cell(column, new, state))
            touched_sort |= column == self.sort_column
        return touched_sort

    def rebuild(self) -> None:
        """Clear and add every accepted row again (after a filter change or a mass removal)."""
        self._keep = self._keep or self.selected_key
        self.clear()
        self._drawn = {}
        self._backlog = dict.fromkeys(self.rows_by_key)
        self._resort = True
        self._work()

    def _render_row(self, cells: dict[str, Cell], state: str) -> list[TableCell]:
        return [
            self._table_cell(column, cells.get(column), state) for column, _ in self.column_specs
        ]

    def _table_cell(self, column: str, cell: Cell | None, state: str) -> TableCell:
        if cell is None:
            return TableCell("-", self._style("", state), (1, ""))
        self._fit(column, cell.text)
        return TableCell(cell.text, self._style(cell.tone, state), cell.sort)

    def _style(self, tone: str, state: str) -> Style | None:
        """The style of a cell's tone within a row state (cached: rows share a few)."""
        key = (tone, state)
        if key not in self._combined:
            style, row_style = self._styles.get(tone), self._styles.get(state)
            self._combined[key] = (
                row_style + style if style and row_style else row_style or style or None
            )
        return self._combined[key]

    def _fit(self, column: str, text: str) -> None:
        """Widen a column to fit `text` (columns never shrink, as in DataTable)."""
        width = len(text) if text.isascii() else cell_len(text)
        spec = self._column_objects[column]
        if width > spec.content_width:
            spec.content_width = width
            self._widened = True

    def _apply_widths(self) -> None:
        """After cells got wider: the scrollable width follows the columns."""
        if not self._widened:
            return
        self._widened = False
        width = sum(column.get_render_width(self) for column in self.columns.values())
        self.virtual_size = Size(width, self.virtual_size.height)
        self.refresh()

    # -------------------------------------------------------------------------------------
    # Sorting and selection

    def _sort(self, keep: str | None) -> None:
        if self.sort_column is None:
            return
        self.sort(self.sort_column, key=_sort_key, reverse=self.sort_reverse)
        if keep is not None:
            self._select(keep)

    def sort_by(self, column: str | None, reverse: bool = False) -> None:
        """Sort by a column key (None: keep arrival order for new rows)."""
        self.sort_column, self.sort_reverse = column, reverse
        self._sort(self.selected_key)
        self._update_title()

    def action_cycle_sort(self) -> None:
        keys = [key for key, _ in self.column_specs]
        index = keys.index(self.sort_column) + 1 if self.sort_column in keys else 0
        self.sort_by(keys[index % len(keys)], self.sort_reverse)

    def action_reverse_sort(self) -> None:
        self.sort_by(self.sort_column or self.column_specs[0][0], not self.sort_reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        column = str(event.column_key.value)
        reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_by(column, reverse)

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:  # no valid cursor yet
            return None
        return str(row_key.value)

    @property
    def selected_row(self) -> AnyRow | None:
        key = self.selected_key
        return self.rows_by_key.get(key) if key is not None else None

    def _select(self, key: str) -> None:
        try:
            index = self.get_row_index(RowKey(key))
        except RowDoesNotExist:
            return
        if index != self.cursor_row:
            self.move_cursor(row=index, animate=False, scroll=False)

    def shown_keys(self) -> list[str]:
        """Row keys in display order."""
        return [str(row.key.value) for row in self.ordered_rows]

    def _update_title(self) -> None:
        label = dict(self.column_specs).get(self.sort_column or "", "")
        arrow = " ▼" if self.sort_reverse else " ▲"
        total, shown = len(self.rows_by_key), len(self._drawn)
        count = f"{shown}" if shown == total else f"{shown} of {total}"
        self.border_subtitle = f"{count} · sorted by {label}{arrow}" if label else count

    def cell_texts(self, key: str) -> dict[str, str]:
        """The plain text of each cell of a shown row (tests, captures)."""
        values = self.get_row(key)
        return {
            column: str(value) for (column, _), value in zip(self.column_specs, values, strict=True)
        }

    def cell_style(self, key: str, column: str) -> Style | None:
        value = self.get_cell(key, column)
        return value.style if isinstance(value, TableCell) else None

    def component_style(self, name: str) -> Style:
        return self._styles[name]

    def apply_groups(
        self,
        groups: Mapping[Any, Iterable[tuple[str, AnyRow]] | None],
        members: dict[Any, set[str]],
    ) -> None:
        """Apply changes to objects that each show as several rows (a route's targets):
        rows of a group not in its new version are removed."""
        changes: dict[str, AnyRow | None] = {}
        for group, rows in groups.items():
            new = dict(rows or ())
            for gone in members.get(group, set()) - set(new):
                changes[gone] = None
            changes.update(new)
            if new:
                members[group] = set(new)
            else:
                members.pop(group, None)
        self.upsert_rows(changes)
