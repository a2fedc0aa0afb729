"""xlsxwriter's workbook, with the parts a big reject workbook spends its end on made quick.

When the last rows are in, xlsxwriter assembles the package: it writes the comments' XML and
their VML shapes one element at a time through its XML writer (about 40 µs a comment: 0.3 s for
the 10,000 comments a reject workbook may carry) and compresses every part at zlib's default
level (0.3 s for the sheet of 38,000 rejected rows). :class:`Workbook` keeps everything else of
xlsxwriter's as it is and changes only:

- each comment's ``<comment>`` element and ``<v:shape>`` are written from one template, byte for
  byte what xlsxwriter's own methods write (the tests compare the two packages' parts); the
  parts' heads, ids and numbering stay xlsxwriter's;
- a comment's ``<comment>`` element (all but its author id, known only once every comment is
  in) and its box's fill colour are made when the comment is added, while rows still stream
  in; the end of the workbook only joins the pieces;
- where each comment's box goes is worked out per column once (xlsxwriter walks the columns'
  widths again for every comment) and per row without a method call per row when the rows
  have the default height; a test compares the positions with xlsxwriter's own;
- the package is compressed at level 1: about three times as fast, files about a quarter bigger;
- each part is added to the zip file by a helper thread as soon as it is written, while the
  next part is made (zlib lets go of the interpreter lock), not all of them after the last:
  for 3,600 commented rejects the workbook's end takes about 40 instead of 50 ms.

This leans on xlsxwriter's packager methods (``_get_packager``, ``_create_package`` and its
``filenames`` list, ``_write_vml_files``, ``_write_comment_files``, the per-comment
``_write_comment_shape`` and ``_write_comment``);
a workbook with buttons or header images, which leadpipe never writes, takes xlsxwriter's own
path.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import queue
import re
import threading
import time
import zipfile
from collections.abc import Iterable
from typing import Any, NamedTuple

import xlsxwriter
import xlsxwriter.workbook
import xlsxwriter.worksheet
from xlsxwriter.comments import Comments, CommentType
from xlsxwriter.packager import Packager
from xlsxwriter.utility import _utf16_len, xl_rowcol_to_cell_fast
from xlsxwriter.vml import Vml
from xlsxwriter.worksheet import convert_cell_args
from xlsxwriter.xmlwriter import XMLwriter

#: zlib level of the reject workbook's parts (1: fastest; xlsxwriter's own is zlib's default, 6)
ZIP_LEVEL = 1


class _Storing:
    """A :class:`Workbook` being stored in this thread: its zip level, and the zip file
    xlsxwriter made for it (once made)."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.zip_file: zipfile.ZipFile | None = None


_storing: contextvars.ContextVar[_Storing | None] = contextvars.ContextVar(
    "leadpipe_xlsx_storing", default=None
)


class _ZipFile(zipfile.ZipFile):
    """The zip file xlsxwriter makes, at :data:`ZIP_LEVEL` while a :class:`Workbook` is stored
    (in this thread) and exactly as before for any other workbook."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        storing = _storing.get()
        if storing is not None:
            kwargs.setdefault("compresslevel", storing.level)
        super().__init__(*args, **kwargs)
        if storing is not None:
            storing.zip_file = self


# xlsxwriter looks its ZipFile up in its module when it stores a workbook: the subclass above
# changes nothing unless a leadpipe Workbook is being stored.
xlsxwriter.workbook.ZipFile = _ZipFile


class _Parts(NamedTuple):
    """What a comment's parts need that is known when it is added."""

    head: str  #: its ``<comment>`` element up to the author id
    tail: str  #: and after it
    fill: str  #: its ``<v:shape>``'s fill colour


class _Worksheet(xlsxwriter.worksheet.Worksheet):  # type: ignore[misc]  # xlsxwriter is untyped
    """A worksheet that renders each comment's text part as the comment is added, and places
    the comments' boxes with each column's part worked out once."""

    def __init__(self) -> None:
        super().__init__()
        #: (row, col) -> the comment's parts (:class:`_Parts`)
        self.comment_parts: dict[tuple[int, int], _Parts] = {}
        #: (col_start, x1, width, anchor) -> the column part of a box's position
        self._across: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    @convert_cell_args  # type: ignore[untyped-decorator]  # ("B3" too, as xlsxwriter's own)
    def write_comment(
        self, row: int, col: int, comment: str, options: dict[str, Any] | None = None
    ) -> int:
        done: int = super().write_comment(row, col, comment, options)
        if done == 0:
            note = self.comments[row][col]
            fill = _XML._escape_attributes(note.color._vml_rgb_hex_value())
            self.comment_parts[(row, col)] = _Parts(*_comment_parts(note), fill)
        return done

    def write_comments(
        self, cells: Iterable[tuple[int, int, str]], options: dict[str, Any]
    ) -> None:
        """:meth:`write_comment` of each ``(row, col, text)`` with the same ``options``, the
        comment's defaults and options worked out once (a reject sheet adds thousands). Options
        that place a comment themselves (offsets, a start cell) take xlsxwriter's own way."""
        if not options.keys() <= _PLAIN_OPTIONS:
            for row, col, text in cells:
                self.write_comment(row, col, text, options)
            return
        model = CommentType(0, 0, "", options)
        fill = _XML._escape_attributes(model.color._vml_rgb_hex_value())
        for row, col, text in cells:
            if self._check_dimensions(row, col):
                continue  # (as write_comment: outside the sheet)
            if len(text) > self.xls_strmax // 2 and _utf16_len(text) > self.xls_strmax:
                continue  # (as write_comment: too long for a cell)
            note = CommentType.__new__(CommentType)
            note.__dict__.update(model.__dict__)
            note.row, note.col, note.text, note.vertices = row, col, text, []
            note.set_offsets(row, col)
            self.comments[row][col] = note
            self.comment_parts[(row, col)] = _Parts(*_comment_parts(note), fill)
        self.has_vml = self.has_comments = True

    def _prepare_vml_objects(self, *args: Any) -> Any:
        self._across = {}  # the columns' widths are final now
        return super()._prepare_vml_objects(*args)

    def _position_object_pixels(
        self, col_start: int, row_start: int, x1: Any, y1: Any, width: Any, height: Any,
        anchor: int = 0,
    ) -> list[Any]:  # fmt: skip
        """xlsxwriter's own result; the column part (the same for every box starting in a
        column) is worked out once, the row part without a method call per row when every row
        has the default height (a reject sheet sets none). Thousands of comments sit in a
        dozen columns."""
        rows_height = self.default_row_height
        if self.row_sizes or rows_height <= 0:  # rows of their own heights: xlsxwriter's way
            return super()._position_object_pixels(  # type: ignore[no-any-return]
                col_start, row_start, x1, y1, width, height, anchor
            )
        key = (col_start, x1, width, anchor)
        across = self._across.get(key)
        if across is None:
            across = self._across[key] = self._columns_part(col_start, x1, width, anchor)
        col_start, x1, col_end, x2, x_abs = across
        while y1 < 0 and row_start > 0:
            y1 += rows_height
            row_start -= 1
        y1 = max(0, y1)
        y_abs = rows_height * row_start + y1
        while y1 >= rows_height:
            y1 -= rows_height
            row_start += 1
        row_end = row_start
        height = height + y1
        while height >= rows_height:
            height -= rows_height
            row_end += 1
        return [col_start, row_start, x1, y1, col_end, row_end, x2, height, x_abs, y_abs]

    def _columns_part(self, col_start: int, x1: Any, width: Any, anchor: int) -> tuple[Any, ...]:
        """xlsxwriter's ``_position_object_pixels``, its column half: (first column, offset in
        it, last column, offset in that, absolute x)."""
        size = self._size_col
        while x1 < 0 and col_start > 0:
            x1 += size(col_start - 1)
            col_start -= 1
        x1 = max(0, x1)
        x_abs = self._col_offset(col_start) if self.col_size_changed else (
            self.default_col_width * col_start
        )  # fmt: skip
        x_abs += x1
        while x1 >= size(col_start, anchor):
            x1 -= size(col_start)
            col_start += 1
        col_end = col_start
        if size(col_start, anchor) > 0:
            width = width + x1
        while width >= size(col_end, anchor):
            width -= size(col_end, anchor)
            col_end += 1
        return col_start, x1, col_end, width, x_abs


class Workbook(xlsxwriter.Workbook):  # type: ignore[misc]  # xlsxwriter is untyped
    """An :class:`xlsxwriter.Workbook` whose comments are written quickly and whose package is
    compressed at :data:`ZIP_LEVEL`; its files are otherwise xlsxwriter's."""

    worksheet_class = _Worksheet

    def _get_packager(self) -> Packager:
        return _Packager()

    def _store_workbook(self) -> None:
        token = _storing.set(_Storing(ZIP_LEVEL))
        try:
            super()._store_workbook()
        finally:
            _storing.reset(token)


class _Packager(Packager):  # type: ignore[misc]  # xlsxwriter is untyped
    def _create_package(self) -> list[Any]:
        """xlsxwriter's parts, each put into the zip file by a helper thread as soon as it is
        written, while the next is made: compressing a part (zlib lets go of the interpreter
        lock) overlaps making the next one (Python). xlsxwriter would compress them one after
        another once all are made. The zip file ends the same: the same parts, in the same
        order, with the same dates."""
        storing = _storing.get()
        if self.in_memory or storing is None or storing.zip_file is None:
            return super()._create_package()  # type: ignore[no-any-return]
        parts = _ZippedParts(storing.zip_file)
        self.filenames = parts
        try:
            super()._create_package()
        except BaseException:
            parts.abandon()
            raise
        parts.close()
        return []  # every part is in the zip file already: nothing left for xlsxwriter to add

    def _write_vml_files(self) -> None:
        sheets = self.workbook.worksheets()
        if any(ws.has_header_vml or ws.buttons_list for ws in sheets):
            super()._write_vml_files()  # not a reject workbook: xlsxwriter's own path
            return
        index = 1
        for ws in sheets:
            if ws.has_vml:
                vml = _Vml(getattr(ws, "comment_parts", {}))
                vml._set_xml_writer(self._filename(f"xl/drawings/vmlDrawing{index}.vml"))
                vml._assemble_xml_file(ws.vml_data_id, ws.vml_shape_id, ws.comments_list, [])
                index += 1

    def _write_comment_files(self) -> None:
        index = 1
        for ws in self.workbook.worksheets():
            if ws.has_comments:
                comments = _Comments(getattr(ws, "comment_parts", {}))
                comments._set_xml_writer(self._filename(f"xl/comments{index}.xml"))
                comments._assemble_xml_file(ws.comments_list)
                index += 1


class _ZippedParts(list[tuple[Any, str, bool]]):
    """The packager's list of parts (temporary file, name in the zip, binary?): a part is
    complete once the next one is listed (the packager writes one part at a time), and is then
    handed to a thread that adds it to the zip file, in order, and removes its file."""

    #: the date xlsxwriter gives every part (it sets the files' times to it before adding them)
    DATE = (1980, 1, 31, 0, 0, 0, 0, 0, -1)
    #: bytes of a part read, checked and compressed at a time (a sheet's part can be 1 GB)
    PIECE = 4 << 20

    def __init__(self, zip_file: zipfile.ZipFile) -> None:
        super().__init__()
        self._zip = zip_file
        self._queue: queue.SimpleQueue[tuple[Any, str, bool] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._handed = 0  # parts handed to the thread
        self._thread = threading.Thread(target=self._run, name="reject-workbook-zip", daemon=True)
        self._thread.start()

    def append(self, part: tuple[Any, str, bool]) -> None:
        super().append(part)  # (listed first: its file is removed if the package is abandoned)
        if self._error is not None:  # a part could not be added: no use making more
            raise self._error
        if len(self) > 1:
            self._hand_over(len(self) - 2)  # the part before is complete

    def close(self) -> None:
        """Add the last part, wait for the thread; its error, if any, is raised here."""
        if self._handed < len(self):
            self._hand_over(len(self) - 1)
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            self._remove_files()
            raise self._error

    def abandon(self) -> None:
        """The packager failed: stop the thread and remove every part's file."""
        self._error = self._error or RuntimeError("the reject workbook was not made")
        self._queue.put(None)
        self._thread.join()
        self._remove_files()

    def _hand_over(self, index: int) -> None:
        """Hand the part at ``index`` (the next one not handed yet) to the thread."""
        self._queue.put(self[index])
        self._handed = index + 1

    def _run(self) -> None:
        while (part := self._queue.get()) is not None:
            if self._error is not None:
                continue  # (its file is removed with the rest)
            path, name, _binary = part
            try:
                self._add(path, name)
                os.remove(path)
            except BaseException as exc:  # raised by the next append() or by close()
                self._error = exc

    def _add(self, path: str, name: str) -> None:
        """What ``ZipFile.write`` does (after xlsxwriter sets the file's date), in pieces of
        :data:`PIECE` bytes instead of 8 KB: each is compressed in one call, without the
        interpreter lock, and the thread seldom waits to get the lock back."""
        date = time.mktime(self.DATE)  # (in the local time zone of now, as xlsxwriter does)
        os.utime(path, (date, date))
        info = zipfile.ZipInfo.from_file(path, name)
        info.compress_type = self._zip.compression
        info._compresslevel = self._zip.compresslevel  # type: ignore[attr-defined]  # (as write)
        with open(path, "rb") as src, self._zip.open(info, "w") as dest:
            while piece := src.read(self.PIECE):
                dest.write(piece)

    def _remove_files(self) -> None:
        for path, _name, _binary in self:
            with contextlib.suppress(OSError):
                os.remove(path)


class _Vml(Vml):  # type: ignore[misc]  # xlsxwriter is untyped
    def __init__(self, parts: dict[tuple[int, int], _Parts]) -> None:
        super().__init__()
        self._parts = parts

    def _write_comment_shape(self, shape_id: int, z_index: int, comment: Any) -> None:
        """xlsxwriter's ``<v:shape>`` of a comment, from one template."""
        left, top, width, height = self._pixels_to_points(comment.vertices)
        c1, r1, x1, y1, c2, r2, x2, y2 = comment.vertices[:8]
        parts = self._parts.get((comment.row, comment.col))
        if parts is not None:
            fill = parts.fill
        else:
            fill = self._escape_attributes(comment.color._vml_rgb_hex_value())
        shown = "visible" if comment.is_visible else "hidden"
        self.fh.write(
            f'<v:shape id="_x0000_s{shape_id}" type="#_x0000_t202" style="position:absolute;'
            f"margin-left:{left:.15g}pt;margin-top:{top:.15g}pt;width:{width:.15g}pt;"
            f'height:{height:.15g}pt;z-index:{z_index};visibility:{shown}" fillcolor="{fill}" '
            'o:insetmode="auto"><v:fill color2="#ffffe1"/>'
            '<v:shadow on="t" color="black" obscured="t"/><v:path o:connecttype="none"/>'
            '<v:textbox style="mso-direction-alt:auto"><div style="text-align:left"></div>'
            '</v:textbox><x:ClientData ObjectType="Note"><x:MoveWithCells/><x:SizeWithCells/>'
            f"<x:Anchor>{c1}, {x1}, {r1}, {y1}, {c2}, {x2}, {r2}, {y2}</x:Anchor>"
            f"<x:AutoFill>False</x:AutoFill><x:Row>{comment.row}</x:Row>"
            f"<x:Column>{comment.col}</x:Column>"
            + ("<x:Visible/>" if comment.is_visible else "")
            + "</x:ClientData></v:shape>"
        )


class _Comments(Comments):  # type: ignore[misc]  # xlsxwriter is untyped
    def __init__(self, parts: dict[tuple[int, int], _Parts]) -> None:
        super().__init__()
        self._parts = parts

    def _write_comment(self, comment: Any, author_id: int) -> None:
        """xlsxwriter's ``<comment>`` element: the parts rendered when it was added."""
        parts = self._parts.get((comment.row, comment.col))
        head, tail = parts[:2] if parts is not None else _comment_parts(comment)
        author = f' authorId="{author_id}"' if author_id != -1 else ""
        self.fh.write(f"{head}{author}{tail}")


_XML = XMLwriter()  # (for its escaping methods)


@functools.lru_cache(maxsize=64)
def _attribute(text: str) -> str:
    """xlsxwriter's escaping of an attribute's value, once per value (every comment of a
    reject workbook names the same font: escaping it each time was a sixth of a batch's time)."""
    escaped: str = _XML._escape_attributes(text)
    return escaped


#: Options of a comment that do not place it themselves (see ``_Worksheet.write_comments``).
_PLAIN_OPTIONS = frozenset(
    {"x_scale", "y_scale", "width", "height", "visible", "color", "author", "font_size",
     "font_name", "font_family"}
)  # fmt: skip
#: Any character xlsxwriter's escaping of a comment's text would look at.
_ESCAPED = re.compile(r'["&<>\n\x00-\x08\x0b-\x1f]|_x[0-9a-fA-F]{4}_')


def _comment_parts(comment: Any) -> tuple[str, str]:
    """A comment's ``<comment>`` element, from one template, before and after its author id."""
    ref = xl_rowcol_to_cell_fast(comment.row, comment.col)
    text = comment.text
    space = ' xml:space="preserve"' if text[:1].isspace() or text[-1:].isspace() else ""
    if _ESCAPED.search(text):
        text = XMLwriter._escape_control_characters(_XML._escape_data(text))
    return f'<comment ref="{ref}"', (
        f'><text><r><rPr><sz val="{comment.font_size}"/>'
        f'<color indexed="81"/><rFont val="{_attribute(comment.font_name)}"/>'
        f'<family val="{comment.font_family}"/></rPr><t{space}>{text}</t></r></text>'
        "</comment>"
    )
