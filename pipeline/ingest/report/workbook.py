"""xlsxwriter's workbook, with the parts a big reject workbook spends its end on made quick.

When the last rows are in, xlsxwriter assembles the package: it writes the comments' XML and
their VML shapes one element at a time through its XML writer (about 40 µs a comment: 0.3 s for
the 10,000 comments a reject workbook may carry) and compresses every part at zlib's default
level (0.3 s for the sheet of 38,000 rejected rows). :class:`Workbook` keeps everything else of
xlsxwriter's as it is and changes only:

- each comment's ``<comment>`` element and ``<v:shape>`` are written from one template, byte for
  byte what xlsxwriter's own methods write (the tests compare the two packages' parts); the
  parts' heads, ids and numbering stay xlsxwriter's;
- a comment's ``<comment>`` element is rendered when the comment is added, while rows still
  stream in, all but its author id (known only once every comment is in); the end of the
  workbook only joins the pieces;
- the package is compressed at level 1: about three times as fast, files about a quarter bigger.

This leans on xlsxwriter's packager methods (``_get_packager``, ``_write_vml_files``,
``_write_comment_files``, the per-comment ``_write_comment_shape`` and ``_write_comment``);
a workbook with buttons or header images, which leadpipe never writes, takes xlsxwriter's own
path.
"""

from __future__ import annotations

import contextvars
import zipfile
from typing import Any

import xlsxwriter
import xlsxwriter.workbook
import xlsxwriter.worksheet
from xlsxwriter.comments import Comments
from xlsxwriter.packager import Packager
from xlsxwriter.utility import _preserve_whitespace, xl_rowcol_to_cell
from xlsxwriter.vml import Vml
from xlsxwriter.xmlwriter import XMLwriter

#: zlib level of the reject workbook's parts (1: fastest; xlsxwriter's own is zlib's default, 6)
ZIP_LEVEL = 1

_zip_level: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "leadpipe_xlsx_zip_level", default=None
)


class _ZipFile(zipfile.ZipFile):
    """The zip file xlsxwriter makes, at :data:`ZIP_LEVEL` while a :class:`Workbook` is stored
    (in this thread) and exactly as before for any other workbook."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        level = _zip_level.get()
        if level is not None:
            kwargs.setdefault("compresslevel", level)
        super().__init__(*args, **kwargs)


# xlsxwriter looks its ZipFile up in its module when it stores a workbook: the subclass above
# changes nothing unless a leadpipe Workbook is being stored.
xlsxwriter.workbook.ZipFile = _ZipFile


class _Worksheet(xlsxwriter.worksheet.Worksheet):  # type: ignore[misc]  # xlsxwriter is untyped
    """A worksheet that renders each comment's text part as the comment is added."""

    def __init__(self) -> None:
        super().__init__()
        #: (row, col) -> the comment's ``<comment>`` element before and after its author id
        self.comment_parts: dict[tuple[int, int], tuple[str, str]] = {}

    def write_comment(
        self, row: int, col: int, comment: str, options: dict[str, Any] | None = None
    ) -> int:
        done: int = super().write_comment(row, col, comment, options)
        if done == 0:
            self.comment_parts[(row, col)] = _comment_parts(self.comments[row][col])
        return done


class Workbook(xlsxwriter.Workbook):  # type: ignore[misc]  # xlsxwriter is untyped
    """An :class:`xlsxwriter.Workbook` whose comments are written quickly and whose package is
    compressed at :data:`ZIP_LEVEL`; its files are otherwise xlsxwriter's."""

    worksheet_class = _Worksheet

    def _get_packager(self) -> Packager:
        return _Packager()

    def _store_workbook(self) -> None:
        token = _zip_level.set(ZIP_LEVEL)
        try:
            super()._store_workbook()
        finally:
            _zip_level.reset(token)


class _Packager(Packager):  # type: ignore[misc]  # xlsxwriter is untyped
    def _write_vml_files(self) -> None:
        sheets = self.workbook.worksheets()
        if any(ws.has_header_vml or ws.buttons_list for ws in sheets):
            super()._write_vml_files()  # not a reject workbook: xlsxwriter's own path
            return
        index = 1
        for ws in sheets:
            if ws.has_vml:
                vml = _Vml()
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


class _Vml(Vml):  # type: ignore[misc]  # xlsxwriter is untyped
    def _write_comment_shape(self, shape_id: int, z_index: int, comment: Any) -> None:
        """xlsxwriter's ``<v:shape>`` of a comment, from one template."""
        left, top, width, height = self._pixels_to_points(comment.vertices)
        c1, r1, x1, y1, c2, r2, x2, y2 = comment.vertices[:8]
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
    def __init__(self, parts: dict[tuple[int, int], tuple[str, str]]) -> None:
        super().__init__()
        self._parts = parts

    def _write_comment(self, comment: Any, author_id: int) -> None:
        """xlsxwriter's ``<comment>`` element: the parts rendered when it was added."""
        head, tail = self._parts.get((comment.row, comment.col)) or _comment_parts(comment)
        author = f' authorId="{author_id}"' if author_id != -1 else ""
        self.fh.write(f"{head}{author}{tail}")


_XML = XMLwriter()  # (for its escaping methods)


def _comment_parts(comment: Any) -> tuple[str, str]:
    """A comment's ``<comment>`` element, from one template, before and after its author id."""
    ref = xl_rowcol_to_cell(comment.row, comment.col)
    text = comment.text
    space = ' xml:space="preserve"' if _preserve_whitespace(text) else ""
    text = XMLwriter._escape_control_characters(_XML._escape_data(text))
    return f'<comment ref="{ref}"', (
        f'><text><r><rPr><sz val="{comment.font_size}"/>'
        f'<color indexed="81"/><rFont val="{_XML._escape_attributes(comment.font_name)}"/>'
        f'<family val="{comment.font_family}"/></rPr><t{space}>{text}</t></r></text>'
        "</comment>"
    )
