"""The reject workbook's quick comment parts are xlsxwriter's own, byte for byte."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
import xlsxwriter

from pipeline.ingest.report.workbook import ZIP_LEVEL, Workbook


def _png() -> bytes:
    """A 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    head = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _build(cls: Any, path: Path, tmpdir: Path | None = None) -> None:
    options: dict[str, Any] = {"constant_memory": True}
    if tmpdir is not None:
        options["tmpdir"] = str(tmpdir)
    wb = cls(str(path), options)
    for s in range(2):
        ws = wb.add_worksheet(f"Sheet {s}")
        ws.set_column(1, 1, 30)
        ws.write_string(0, 0, "head")
        # more than 1,024 comments on a sheet: xlsxwriter numbers the VML ids in blocks
        notes = []
        for r in range(1, 1200):
            text = f" bad & <{r}> \x01 _x0041_ é " if r % 7 else f"plain {r}\nsecond line"
            if r % 5 == 0:
                text = f"no escaping needed {r}" if r % 2 else f"a tab at the end {r}\t"
            notes.append((r, r % 4, text))
        if s == 1 and hasattr(ws, "write_comments"):  # ours: a batch at a time (the sink's way)
            ws.write_comments(notes, {"x_scale": 3})
        else:
            for r, c, text in notes:
                ws.write_comment(r, c, text, {"x_scale": 3})
        for r in range(1, 1200):
            ws.write_string(r, 0, "x")
    ws.write_comment(1300, 2, "shown", {"visible": True, "author": "A & B", "color": "#ff0000"})
    ws.write_comment("D1302", "by the cell's name", {"x_scale": 3})
    # parts a reject workbook never has, written by other packager methods: the zip thread
    # must find each of them complete too
    other = wb.add_worksheet("Other")
    other.write_number(0, 0, 1)
    other.insert_image(6, 0, "dot.png", {"image_data": io.BytesIO(_png())})
    chart = wb.add_chart({"type": "line"})
    chart.add_series({"values": "=Other!$A$1:$A$5"})
    other.insert_chart("F2", chart)
    wb.close()


@pytest.mark.parametrize("piece", [4 << 20, 1000])
def test_every_part_equals_xlsxwriters_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece: int
) -> None:
    """Every part and its zip entry (order, date, compression, attributes) as xlsxwriter makes
    them, whether a part goes into the zip file in one piece or in many."""
    from pipeline.ingest.report import workbook as module

    monkeypatch.setattr(module._ZippedParts, "PIECE", piece)
    ref, ours, parts = tmp_path / "ref.xlsx", tmp_path / "ours.xlsx", tmp_path / "parts"
    parts.mkdir()
    _build(xlsxwriter.Workbook, ref)
    _build(Workbook, ours, parts)
    with zipfile.ZipFile(ref) as a, zipfile.ZipFile(ours) as b:
        assert a.namelist() == b.namelist()
        assert "xl/comments2.xml" in a.namelist()
        assert "xl/drawings/vmlDrawing2.vml" in a.namelist()
        for name in a.namelist():
            if name != "docProps/core.xml":  # the creation time
                assert a.read(name) == b.read(name), name
        for x, y in zip(a.infolist(), b.infolist(), strict=True):
            assert (x.date_time, x.compress_type, x.external_attr, x.flag_bits, x.extra) == (
                y.date_time, y.compress_type, y.external_attr, y.flag_bits, y.extra
            ), x.filename  # fmt: skip
        assert b.getinfo("xl/worksheets/sheet1.xml").file_size > 1000  # (many pieces)
    assert list(parts.iterdir()) == []  # no part's temporary file is left


def test_a_failed_part_leaves_no_workbook_part_behind(tmp_path: Path) -> None:
    """A part that cannot be added to the zip file (here: its file is gone) fails the
    workbook's close, and no temporary file of a part is left."""
    from xlsxwriter.exceptions import FileCreateError

    from pipeline.ingest.report import workbook as module

    class Failing(module._ZippedParts):
        def append(self, part: Any) -> None:
            if self and self[-1][1] == "xl/workbook.xml":  # written, not yet handed over
                Path(self[-1][0]).unlink()
            super().append(part)

    parts = tmp_path / "parts"
    parts.mkdir()
    wb = Workbook(str(tmp_path / "x.xlsx"), {"constant_memory": True, "tmpdir": str(parts)})
    ws = wb.add_worksheet()
    ws.write_string(0, 0, "head")
    ws.write_comment(1, 0, "why", {"x_scale": 3})
    original = module._ZippedParts
    module._ZippedParts = Failing  # type: ignore[misc]
    try:
        with pytest.raises(FileCreateError, match="No such file"):  # (xlsxwriter's words)
            wb.close()
    finally:
        module._ZippedParts = original  # type: ignore[misc]
    assert list(parts.iterdir()) == []


def _deflated_size(data: bytes, level: int) -> int:
    packer = zlib.compressobj(level, zlib.DEFLATED, -15)
    return len(packer.compress(data) + packer.flush())


def test_only_a_leadpipe_workbook_is_compressed_at_its_level(tmp_path: Path) -> None:
    plain, ours = tmp_path / "plain.xlsx", tmp_path / "ours.xlsx"
    _build(Workbook, ours)
    _build(xlsxwriter.Workbook, plain)  # after ours: xlsxwriter's own level is untouched
    sheet = "xl/worksheets/sheet1.xml"
    with zipfile.ZipFile(plain) as a, zipfile.ZipFile(ours) as b:
        data = a.read(sheet)
        assert b.getinfo(sheet).compress_size == _deflated_size(data, ZIP_LEVEL)
        assert a.getinfo(sheet).compress_size == _deflated_size(data, zlib.Z_DEFAULT_COMPRESSION)
        assert b.getinfo(sheet).compress_size != a.getinfo(sheet).compress_size


def test_box_positions_equal_xlsxwriters_own(tmp_path: Path) -> None:
    """Where a comment's box goes: the same as xlsxwriter's for narrow, wide and hidden
    columns, offsets that reach back into earlier columns and rows, and either anchor."""
    import random

    from xlsxwriter.worksheet import Worksheet

    rng = random.Random(11)
    ours_wb, ref_wb = (
        Workbook(str(tmp_path / "a.xlsx")),
        xlsxwriter.Workbook(str(tmp_path / "b.xlsx")),
    )
    ours, ref = ours_wb.add_worksheet(), ref_wb.add_worksheet()
    assert type(ours) is not Worksheet  # ours is the subclass
    assert type(ref) is Worksheet
    for ws in (ours, ref):
        ws.set_column(0, 0, 3)
        ws.set_column(2, 2, 40)
        ws.set_column(4, 5, 12, None, {"hidden": True})
        ws.set_column(7, 7, 0.5)
    for _ in range(3000):
        args = (
            rng.randrange(0, 12), rng.randrange(0, 60), rng.randrange(-300, 300),
            rng.randrange(-80, 80), rng.choice([128, 384, 50, 0]), rng.choice([74, 20, 200]),
            rng.choice([0, 4]),
        )  # fmt: skip
        assert ours._position_object_pixels(*args) == ref._position_object_pixels(*args), args
    ours_wb.close()
    ref_wb.close()
