//! Workbooks written byte by byte, as a hostile tool could write them.

use std::io::Write;

/// An XLS (BIFF8 in an OLE compound file) whose one sheet holds `records` (type, data),
/// listed `listings` times in the workbook (as a hostile file may).
pub fn xls(path: &std::path::Path, records: &[(u16, Vec<u8>)], listings: usize) {
    fn record(out: &mut Vec<u8>, typ: u16, data: &[u8]) {
        out.extend(typ.to_le_bytes());
        out.extend((data.len() as u16).to_le_bytes());
        out.extend(data);
    }
    let bof = |dt: u16| [&0x0600u16.to_le_bytes()[..], &dt.to_le_bytes(), &[0; 12]].concat();
    let name = b"People";
    let sheet_at = 20 + listings * (12 + name.len()) + 4;
    let mut stream = Vec::new();
    record(&mut stream, 0x0809, &bof(0x0005));
    for _ in 0..listings {
        let mut data = (sheet_at as u32).to_le_bytes().to_vec();
        data.extend([0, 0, name.len() as u8, 0]);
        data.extend(name);
        record(&mut stream, 0x0085, &data);
    }
    record(&mut stream, 0x000A, &[]);
    assert_eq!(stream.len(), sheet_at);
    record(&mut stream, 0x0809, &bof(0x0010));
    for (typ, data) in records {
        record(&mut stream, *typ, data);
    }
    record(&mut stream, 0x000A, &[]);
    let mut file = cfb::create(path).unwrap();
    file.create_stream("/Workbook")
        .unwrap()
        .write_all(&stream)
        .unwrap();
    file.flush().unwrap();
}

/// A cell record's start: its row, column and (default) format.
pub fn xls_cell(row: u16, col: u16) -> Vec<u8> {
    [row.to_le_bytes(), col.to_le_bytes(), [0, 0]].concat()
}
