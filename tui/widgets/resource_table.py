"""A DataTable keyed by object, updated in place: changed cells only, no redraw per event.

Rows come from `tui.data.rows` (cells with a sort value and a tone). A table keeps every row
it was given and shows those it `accepts` (the flavors table filters); an update touches
only the cells whose text or tone changed, adds and removes single rows, and rebuilds the
table only when a batch removes many rows at once (DataTable removes rows one by one in
linear time). Tones and row states are CSS component classes, styled in `styles.tcss`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowDoesNotExist, RowKey

from tui.data.rows import AnyRow, Cell

TONES = ("good", "bad", "warn", "dim")


class SortableText(Text):
    """A cell's text that sorts by its value (numbers as numbers, unknowns last)."""

    sort_value: tuple[Any, ...] = (1, "")


def _sort_key(value: object) -> tuple[Any, ...]:
    return getattr(value, "sort_value", (1, ""))


class ResourceTable(DataTable[Text]):
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

    def on_mount(self) -> None:
        for key, label in self.column_specs:
            self.add_column(label, key=key)
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
        """Apply new versions of rows (None: the row is gone), touching only what changed."""
        if not changes:
            return
        selected = self.selected_key
        leaving = [
            key
            for key, row in changes.items()
            if key in self._drawn and (row is None or not self.accepts(row))
        ]
        for key, row in changes.items():
            if row is None:
                self.rows_by_key.pop(key, None)
            else:
                self.rows_by_key[key] = row
        if len(leaving) > self.REBUILD_AT:
            self.rebuild()
            return
        for key in leaving:
            self._drawn.pop(key, None)
            with contextlib.suppress(RowDoesNotExist):
                self.remove_row(key)
        resort = False
        for key, row in changes.items():
            if row is None or not self.accepts(row):
                continue
            cells, state = row.cells(), self.row_state(row)
            drawn = self._drawn.get(key)
            if drawn is None:
                self.add_row(*self._render_row(cells, state), key=key)
                resort = True
            else:
                resort |= self._update_row(key, drawn, cells, state)
            self._drawn[key] = (cells, state)
        if resort and self.sort_column:
            self._sort(selected)
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
            text = self._render(new, state)
            width = self.columns[ColumnKey(column)].content_width
            self.update_cell(key, column, text, update_width=cell_len(text.plain) > width)
            touched_sort |= column == self.sort_column
        return touched_sort

    def rebuild(self) -> None:
        """Clear and add every accepted row (after a filter change or a mass removal)."""
        selected = self.selected_key
        self.clear()
        self._drawn = {}
        shown = [(k, r) for k, r in self.rows_by_key.items() if self.accepts(r)]
        for key, row in shown:
            cells, state = row.cells(), self.row_state(row)
            self.add_row(*self._render_row(cells, state), key=key)
            self._drawn[key] = (cells, state)
        if self.sort_column:
            self._sort(selected)
        elif selected is not None:
            self._select(selected)
        self._update_title()

    def _render_row(self, cells: dict[str, Cell], state: str) -> list[Text]:
        return [self._render(cells.get(column), state) for column, _ in self.column_specs]

    def _render(self, cell: Cell | None, state: str) -> SortableText:
        if cell is None:
            text = SortableText("-")
            text.sort_value = (1, "")
            return text
        style = self._styles.get(cell.tone) if cell.tone else None
        if state:
            row_style = self._styles.get(state)
            style = row_style + style if style and row_style else row_style or style
        text = SortableText(cell.text, style=style or "")
        text.sort_value = cell.sort
        return text

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
        return value.style if isinstance(value, Text) and isinstance(value.style, Style) else None

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
