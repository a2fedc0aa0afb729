"""Build the demo spreadsheet for the README walkthrough (campaign B2B-DK-SPRING).

    .venv/bin/python examples/make_demo.py

Writes ``examples/B2B-DK-SPRING-demo.xlsx`` and the same rows as ``.csv``. Ten leads, four of
them with a deliberate mistake that leadpipe puts into ``rejected/`` for a person to fix:

- row 4: the phone number is too short
- row 6: the company name is missing (a required field)
- row 8: the e-mail address has two @
- row 10: the segment is not one of the campaign's choices (SMB, Enterprise)
"""

from __future__ import annotations

import csv
import sys
from datetime import datetime
from pathlib import Path

import xlsxwriter

HERE = Path(__file__).resolve().parent
HEADERS = ["Name", "Phone", "Email", "Segment", "Note"]
ROWS = [
    ["Nordlys Rådgivning ApS", "+4520112233", "kontakt@nordlys.dk", "SMB", "Ring efter kl. 10"],
    ["Fjordkraft Søndergaard A/S", "+4531445566", "info@fjordkraft.dk", "Enterprise", ""],
    ["Bølgen IT", "+45 12", "hej@boelgen.dk", "SMB", "phone too short"],
    ["Havnens Bageri", "004586123456", "ordre@havnensbageri.dk", "SMB", ""],
    ["", "+4540778899", "post@ukendt.dk", "SMB", "name missing"],
    ["Ærø Energi", "+4562525252", "salg@aeroe-energi.dk", "Enterprise", "Ønsker tilbud"],
    ["Skov & Sø Consult", "+4523232323", "lars@@skovogsoe.dk", "SMB", "e-mail has two @"],
    ["Kattegat Logistik", "+4570203040", "logistik@kattegat.dk", "Enterprise", ""],
    ["Vestjysk Maskinfabrik", "+4597121314", "mail@vjmaskin.dk", "Medium", "segment not a choice"],
    ["Østerbro Cykler", "+4535353535", "butik@oebrocykler.dk", "SMB", ""],
]


def main(out: Path = HERE) -> None:
    """Write both files into ``out`` (default: beside this script)."""
    xlsx = out / "B2B-DK-SPRING-demo.xlsx"
    wb = xlsxwriter.Workbook(str(xlsx))
    wb.set_properties({"title": "leadpipe demo leads", "created": datetime(2026, 11, 27)})
    ws = wb.add_worksheet("Leads")
    bold = wb.add_format({"bold": True})
    for col, header in enumerate(HEADERS):
        ws.write_string(0, col, header, bold)
    for r, row in enumerate(ROWS, start=1):
        for col, value in enumerate(row):
            ws.write_string(r, col, value)  # text cells: phones keep their + and leading zeros
    ws.set_column(0, 0, 28)
    ws.set_column(1, 4, 22)
    wb.close()
    with (out / "B2B-DK-SPRING-demo.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADERS)
        w.writerows(ROWS)
    print(f"wrote {xlsx.name} and B2B-DK-SPRING-demo.csv in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
